"""A greedy search's plan cut back to a smaller ratio, as the run at that ratio would have made it, so two
searches can be compared at the same size without running either again.

    python bench/compare/at_ratio.py SRC_RUN RATIO OUT_RUN
    blockprune eval OUT_RUN --tasks wikitext2,ptb --max-windows 0 ...

A greedy search (blockpruner, blockpruner-joint, layer-ppl, ...) removes one unit a step and never looks
ahead, so its budget changes a step's choice only through which candidates fit: step k of a run at RATIO
is step k of the longer run as long as every candidate fitted at step k in both, i.e. the ratio before
step k plus the largest candidate is at most RATIO. This keeps the longest prefix for which that holds
and refuses when the cut would fall after a step the smaller budget could have changed, or where the run at
RATIO would have gone on (the smallest candidate still fits after the kept steps: what it would remove
is not in the plan). Candidate sizes are taken from the units the plan removed: the largest (a whole
layer for layer-ppl and the joint search; every layer of a Llama-layout model is the same size) and the
smallest (an attention block). A search still running can be cut at steps it has finished. Population
and one-shot searches are refused: their sets are not paths. OUT_RUN/plan.json is the source plan with the kept steps, `ratio` set
to RATIO and a `cut_from` record naming the source."""
from __future__ import annotations

import sys
from pathlib import Path

from blockprune.plan import Plan

GREEDY = ("blockpruner", "blockpruner-joint", "layer-ppl")


def cut(plan: Plan, ratio: float) -> Plan:
    if plan.method not in GREEDY or plan.search is not None:
        raise SystemExit(f"at_ratio: {plan.method} is not a greedy search; only {', '.join(GREEDY)} plans can be cut")
    before = [0.0] + [s["ratio"] for s in plan.steps]
    sizes = [b - a for a, b in zip(before, before[1:])]
    largest, smallest = max(sizes), min(sizes)
    keep = 0
    while keep < len(plan.steps) and plan.steps[keep]["ratio"] <= ratio + 1e-12:
        if before[keep] + largest > ratio + 1e-12:
            raise SystemExit(f"at_ratio: step {keep + 1} ran at {before[keep]:.4f} with {largest:.4f} units "
                             f"among its candidates; a run at {ratio} might have chosen otherwise")
        keep += 1
    if before[keep] + smallest <= ratio + 1e-12:
        raise SystemExit(f"at_ratio: after {keep} steps ({before[keep]:.4f}) a {smallest:.4f} unit still fits "
                         f"{ratio}: the run at {ratio} would go on with a step this plan does not record")
    return Plan(**{**plan.__dict__, "steps": plan.steps[:keep], "status": "done",
                   "options": {**plan.options, "ratio": ratio, "cut_from": plan.options.get("ratio")}})


def main(src: str, ratio: str, dst: str) -> None:
    plan = cut(Plan.load(src), float(ratio))
    Path(dst).mkdir(parents=True, exist_ok=True)
    plan.save(Path(dst) / "plan.json")
    last = plan.steps[-1]
    print(f"{dst}: {len(plan.steps)} steps of {src}, ratio {last['ratio']:.4f}, calibration ppl {last['ppl']:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
