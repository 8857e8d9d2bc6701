"""A greedy search's plan cut back to a smaller ratio, as the run at that ratio would have made it, so two
searches can be compared at the same size without running either again.

    python bench/compare/at_ratio.py SRC_RUN RATIO OUT_RUN
    blockprune eval OUT_RUN --tasks wikitext2,ptb --out OUT_RUN/eval-ppl ...    (bench/compare/at_ratio.sh runs
    blockprune eval OUT_RUN --tasks piqa,... --limit 300 --out OUT_RUN/eval-zero-shot   both, resumable by part)
    python bench/compare/at_ratio.py --table COMPARISON CUT_FOLDER METHOD...

A greedy search (blockpruner, blockpruner-joint, layer-ppl, ...) removes one unit a step and never looks
ahead, so its budget changes a step's choice only through which candidates fit: step k of a run at RATIO
is step k of the longer run as long as every candidate fitted at step k in both, i.e. the ratio before
step k plus the largest candidate is at most RATIO. This keeps the longest prefix for which that holds
and refuses when the cut would fall after a step the smaller budget could have changed, or where the run at
RATIO would have gone on (the smallest candidate still fits after the kept steps: what it would remove
is not in the plan). Candidate sizes are taken from the units the plan removed: the largest (a whole
layer for layer-ppl and the joint search; every layer of a Llama-layout model is the same size) and the
smallest (an attention block). A search still running can be cut at steps it has finished. Population
and one-shot searches are refused: their sets are not paths. OUT_RUN/plan.json is the source plan with
the kept steps, `ratio` set to RATIO and a `cut_from` record naming the source run and its ratio.

--table prints the comparison folder's dense row and each METHOD at the cut folder's size (its cut run
where CUT_FOLDER has one, else the comparison's own run, e.g. layer-ppl, which stopped there), as
results_md.py prints a comparison, with the machines behind each row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from blockprune import machine
from blockprune.compare import markdown, method_row
from blockprune.evaluate.resumable import missing_tasks
from blockprune.plan import Plan

GREEDY = ("blockpruner", "blockpruner-joint", "layer-ppl")
SETTINGS = ("seqlen", "max_windows", "limit", "num_fewshot")  # what makes two evaluations alike


def cut(plan: Plan, ratio: float, source: str = "") -> Plan:
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
                   "options": {**plan.options, "ratio": ratio,
                               "cut_from": {"run": source, "ratio": plan.options.get("ratio")}}})


def evaluation(run: Path, settings: dict) -> dict | None:
    """A run's evaluation: its eval.json, or its eval-*/eval.json parts merged; None where there is none.
    Every part must have been made with the comparison's `settings`, as far as they bear on its tasks (a
    perplexity-only part takes every document of no task, a zero-shot part no window)."""
    parts = [run / "eval.json"] if (run / "eval.json").exists() else sorted(run.glob("eval-*/eval.json"))
    if not parts:
        return None
    merged: dict = {}
    for path in parts:
        r = json.loads(path.read_text())
        bearing = {k for k in settings if (k in ("seqlen", "max_windows") and r["perplexity"])
                   or (k in ("limit", "num_fewshot") and r["zero_shot"])}
        if any(r["settings"].get(k) != settings[k] for k in bearing):
            raise SystemExit(f"at_ratio: {path} was evaluated with {r['settings']}, not the comparison's {settings}")
        merged = {**r, "settings": {**r["settings"], **settings},
                  "perplexity": {**merged.get("perplexity", {}), **r["perplexity"]},
                  "zero_shot": {**merged.get("zero_shot", {}), **r["zero_shot"]},
                  "average": r.get("average") or merged.get("average"),
                  "machines": merged.get("machines", []) + r.get("machines", [])}
    return merged


def table(comparison: str, cut_folder: str, methods: list[str]) -> None:
    base, cuts = Path(comparison), Path(cut_folder)
    result = json.loads((base / "comparison.json").read_text())
    settings = {k: result["eval"][k] for k in SETTINGS}
    rows = [r for r in result["rows"] if r["method"] == "dense"]
    records: dict = {"dense": machine.folder_records(base / "dense")}
    pending, ratio = [], 0.0
    for m in methods:
        is_cut = (cuts / m / "plan.json").exists()
        run = cuts / m if is_cut else base / m
        plan, ev = Plan.load(run), evaluation(run, settings)
        if ev is None:
            pending.append(f"- {m} ({run}): not evaluated yet")
            continue
        missing = missing_tasks(ev, result["tasks"], settings)
        if missing:  # shown with what it has, the rest as –
            pending.append(f"- {m} ({run}): not evaluated yet on {', '.join(missing)}")
        label = f"{m} (cut from {plan.options['cut_from']['ratio']:.0%})" if is_cut else m
        compare_record = json.loads((run / "compare.json").read_text()) if (run / "compare.json").exists() else None
        rows.append(method_row(label, plan, ev, compare_record))
        # a cut run: its search's machines are its source's (the steps it kept), its evaluation's its own
        searched = machine.folder_records(plan.options["cut_from"]["run"]) if is_cut else machine.folder_records(run)
        records[label] = searched + (ev.get("machines") or [None] if is_cut else [])
        ratio = max(ratio, plan.outcome.ratio)
    result["rows"], result["target_ratio"] = rows, ratio
    print(markdown(result).split("\n", 2)[2])
    if pending:
        print("Evaluation not finished (– in the table):\n\n" + "\n".join(pending) + "\n")
    print("\n\n".join(machine.table_lines(records)))


def main(src: str, ratio: str, dst: str) -> None:
    plan = cut(Plan.load(src), float(ratio), src)
    Path(dst).mkdir(parents=True, exist_ok=True)
    plan.save(Path(dst) / "plan.json")
    last = plan.steps[-1]
    print(f"{dst}: {len(plan.steps)} steps of {src}, ratio {last['ratio']:.4f}, calibration ppl {last['ppl']:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main(*sys.argv[1:4])
