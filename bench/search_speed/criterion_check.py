"""Does racing on the per-parameter criterion decide like exhaustive scoring? (issue 30: "every new search
decides like exhaustive scoring where it claims to")

SmolLM2-135M on the fixed calibration text (8 windows of 256 tokens), the joint search (whole layers and
single blocks, ranked by calibration-NLL rise per parameter) to a --ratio budget, once with the exact
incremental scorer and once with racing at its default z, side by side in two one-thread processes.
Prints both removal paths, whether they are identical, each step's perplexities, the candidate-windows
racing ran against the exhaustive count, and the CPU seconds of each; writes
bench/search_speed/criterion_check/<machine>.json (one file per kind of machine, never overwritten by another).

    python bench/search_speed/criterion_check.py [--data-dir ../shared/data] [--ratio 0.05]
    python bench/search_speed/criterion_check.py --show bench/search_speed/criterion_check/amd-epyc-avx2.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def search(scorer: str, ratio: float, data_dir: str) -> dict:
    import torch

    from blockprune import models
    from blockprune.data import load_windows
    from blockprune.window_nll import perplexity
    from blockprune.plan import Plan
    from blockprune.scoring.incremental import IncrementalScorer
    from blockprune.scoring.racing import RacingScorer
    from blockprune.search import candidate_units, greedy
    from blockprune.view import BlockView

    torch.set_num_threads(1)
    net, tok = models.load("smollm2-135m")
    view = BlockView(net)
    windows = load_windows(str(Path(data_dir) / "calibration" / "alpaca_sample16.txt"), tok, 256)
    plan = Plan(method="blockpruner-joint", model={}, calibration={}, options={},
                dense={"ppl": perplexity(view, windows)})
    make = {"incremental": IncrementalScorer, "racing": RacingScorer}[scorer]
    t0, c0 = time.perf_counter(), time.process_time()
    greedy(view, make(view, windows), plan, candidate_units(view, "joint"), num_blocks=None, ratio=ratio, criterion="per-param")
    return {"scorer": scorer, "removed": plan.removed, "ppl": [s["ppl"] for s in plan.steps],
            "evaluated_windows": sum(s["evaluated_windows"] for s in plan.steps),
            "exhaustive_windows": sum(s["exhaustive_windows"] for s in plan.steps),
            "wall_seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("BLOCKPRUNE_DATA", "../shared/data"))
    ap.add_argument("--ratio", type=float, default=0.05)
    ap.add_argument("--one", choices=["incremental", "racing"], help=argparse.SUPPRESS)  # a lane's process
    ap.add_argument("--show", metavar="FILE", help="print a results file's check again, running nothing")
    a = ap.parse_args()
    if a.show:
        show(json.loads(Path(a.show).read_text()))
        return
    if a.one:
        print(json.dumps(search(a.one, a.ratio, a.data_dir)))
        return
    from blockprune import machine

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lanes = {s: subprocess.Popen([sys.executable, __file__, "--one", s, "--ratio", str(a.ratio), "--data-dir", a.data_dir],
                                 stdout=subprocess.PIPE, env=env, text=True) for s in ("incremental", "racing")}
    runs = {s: json.loads(p.communicate()[0].strip().splitlines()[-1]) for s, p in lanes.items()}
    exact, raced = runs["incremental"], runs["racing"]
    same = exact["removed"] == raced["removed"]
    result = {"command": f"python bench/search_speed/criterion_check.py --ratio {a.ratio}", "machine": machine.describe(),
              "ratio": a.ratio, "same_removals": same, "runs": runs}
    out = HERE / "criterion_check" / f"{machine.tag()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    show(result)
    print(f"(written to {out.relative_to(HERE.parents[1])})")


def show(result: dict) -> None:
    """The check's lines, from a run's result (`--show FILE` prints a results file's again)."""
    from blockprune import machine

    runs = result["runs"]
    exact, raced = runs["incremental"], runs["racing"]
    print(f"joint search, per-param criterion, to ratio {result['ratio']} on alpaca_sample16 (8 x 256 tokens)")
    for s, r in runs.items():
        print(f"  {s:11s} {', '.join(r['removed'])}  ppl {' '.join(f'{p:.3f}' for p in r['ppl'])}  "
              f"{r['evaluated_windows']}/{r['exhaustive_windows']} candidate-windows, {r['cpu_seconds']} CPU s")
    print(f"same removals: {result['same_removals']}; racing ran "
          f"{raced['evaluated_windows'] / exact['evaluated_windows']:.2f} of the exhaustive candidate-windows, "
          f"{exact['cpu_seconds'] / raced['cpu_seconds']:.2f}x less CPU time")
    print(f"`{result['command']}`; machine: {machine.summary(result['machine'])}")

if __name__ == "__main__":
    main()
