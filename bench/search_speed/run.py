"""Search speed: plain full-forward scoring vs exact incremental scoring vs racing, side by side.

SmolLM2-135M, the fixed calibration text (8 windows of 256 tokens), BlockPruner `mix`, K = 2.
Prints wall-time ratios, whether the selections are identical, and the exact mode's efficiency: the
block-forward work the cached search cannot avoid, priced at the dense model's measured per-block
speed, over the measured time. Writes bench/search_speed/RESULTS.md and results.json.

    python bench/search_speed/run.py [--data-dir ../shared/data] [--k 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from blockprune import models
from blockprune.data import load_windows
from blockprune.incremental import IncrementalScorer
from blockprune.perplexity import PlainScorer
from blockprune.plan import Plan
from blockprune.racing import RacingScorer
from blockprune.search import greedy, units
from blockprune.view import BlockView

HERE = Path(__file__).resolve().parent


def block_seconds(view: BlockView, scorer: IncrementalScorer) -> tuple[list[float], float]:
    """Dense per-block and head seconds over all calibration windows (median of 3 timed passes)."""
    runs = []
    for _ in range(3):
        per_block = [0.0] * len(view.blocks)
        head = 0.0
        for b, prep in enumerate(scorer.cache.preps):
            h = prep.hidden
            for i in range(len(view.blocks)):
                t = time.perf_counter()
                h = view.run(h, prep, frozenset(), i, i + 1)
                per_block[i] += time.perf_counter() - t
            t = time.perf_counter()
            view.window_nll(h, scorer.cache.batches[b])
            head += time.perf_counter() - t
        runs.append((per_block, head))
    runs.sort(key=lambda r: sum(r[0]) + r[1])
    return runs[1]


def ideal_seconds(view: BlockView, plan: Plan, per_block: list[float], head: float) -> float:
    """Unavoidable work of the cached search: each candidate's blocks from itself on, plus the head,
    plus re-running the blocks after each removal to refresh the cache."""
    total = sum(per_block)  # the first cache fill
    removed: set[str] = set()
    for step in plan.steps:
        for name in step["scores"]:
            first = view.by_name[name].index
            total += sum(t for i, t in enumerate(per_block)
                         if i > first and view.blocks[i].name not in removed) + head
        removed.add(step["removed"])
        first = view.by_name[step["removed"]].index
        total += sum(t for i, t in enumerate(per_block) if i > first and view.blocks[i].name not in removed)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--k", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = models.load("smollm2-135m")
    view = BlockView(model)
    text = Path(args.data_dir) / "calibration" / "alpaca_sample16.txt"
    windows = load_windows(str(text), tok, 256)
    cands = units(view, "block", "mix")
    results = {}
    for name, make in [("plain", lambda: PlainScorer(view, windows)),
                       ("incremental", lambda: IncrementalScorer(view, windows)),
                       ("racing", lambda: RacingScorer(view, windows))]:
        t0 = time.perf_counter()
        scorer = make()
        plan = Plan(method="blockpruner", model={}, calibration={}, options={})
        greedy(view, scorer, plan, cands, num_blocks=args.k, ratio=None)
        secs = time.perf_counter() - t0
        results[name] = {"seconds": round(secs, 2), "removed": plan.removed, "ppl": plan.steps[-1]["ppl"],
                         "evaluated_windows": sum(s["evaluated_windows"] for s in plan.steps),
                         "exhaustive_windows": sum(s["exhaustive_windows"] for s in plan.steps), "plan": plan}
        print(f"{name:12s} {secs:8.1f} s  removed {plan.removed}  ppl {plan.steps[-1]['ppl']:.4f}", flush=True)
    per_block, head = block_seconds(view, IncrementalScorer(view, windows))
    ideal = ideal_seconds(view, results["incremental"]["plan"], per_block, head)
    plain, inc, race = (results[k] for k in ("plain", "incremental", "racing"))
    summary = {
        "incremental_speedup": plain["seconds"] / inc["seconds"],
        "racing_speedup": plain["seconds"] / race["seconds"],
        "incremental_same_selection": inc["removed"] == plain["removed"],
        "racing_same_selection": race["removed"] == plain["removed"],
        "racing_ppl_rel_diff": abs(race["ppl"] - plain["ppl"]) / plain["ppl"],
        "incremental_efficiency": ideal / inc["seconds"],
        "ideal_incremental_seconds": round(ideal, 2),
        "racing_window_fraction": race["evaluated_windows"] / race["exhaustive_windows"],
    }
    for r in results.values():
        r.pop("plan")
    command = "python bench/search_speed/run.py" + (f" --k {args.k}" if args.k != 2 else "")
    out = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
           f"{torch.get_num_threads()} torch threads", "k": args.k, "windows": len(windows), "seqlen": 256,
           "modes": results, "summary": summary}
    (HERE / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Search speed (bench/search_speed)", "",
        f"Command: `{command}` ({out['date']}, {out['machine']}). SmolLM2-135M, fp32, "
        f"`alpaca_sample16.txt` ({len(windows)} windows x 256 tokens), BlockPruner mix, K = {args.k}.", "",
        "| mode | seconds | speed-up vs plain | candidate-windows run | removed | final calib. ppl |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for k, r in results.items():
        lines.append(f"| {k} | {r['seconds']:.1f} | {plain['seconds'] / r['seconds']:.2f}x | "
                     f"{r['evaluated_windows']}/{r['exhaustive_windows']} | {', '.join(r['removed'])} | {r['ppl']:.4f} |")
    lines += ["", f"- incremental selections identical to plain: {summary['incremental_same_selection']}",
              f"- racing selections identical to plain: {summary['racing_same_selection']}; final ppl relative "
              f"difference {summary['racing_ppl_rel_diff']:.2e}",
              f"- exact-mode efficiency (ideal {ideal:.1f} s at dense per-block speed / measured "
              f"{inc['seconds']:.1f} s): {summary['incremental_efficiency']:.2f}", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
