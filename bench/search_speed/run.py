"""Search speed: plain full-forward scoring vs exact incremental scoring vs racing vs two-precision racing.

SmolLM2-135M, the fixed calibration text (8 windows of 256 tokens), BlockPruner `mix`, K = 2; racing at
its default z (2.5) and at z = 3; two-precision racing (`--scorer fast`) as `auto` would run it on this
machine (bf16 where the CPU runs it natively, else plain racing), and forced to race in bf16 whatever the
CPU (`fast-bf16`), so its selections and its cost are measured on any machine. Prints time ratios over
plain fp32, whether the selections are identical to plain (exhaustive fp32) scoring's, and the exact
mode's efficiency: the block-forward work the cached search cannot avoid, at the dense model's throughput
as plain scoring measured it in the same run, over the measured time. Writes
bench/search_speed/results/<machine tag>.json (`blockprune.machine`: a run on another kind of CPU writes
beside the others, never over them) with the machine's record, and prints the table; `--show FILE` prints
a results file's table again, and `--show FILE --condensed` the short table bench/RESULTS.md shows of it (CPU
times; a bf16 race's candidate-windows in bf16 and fp32 apart).

Each mode runs in its own process with one thread, in two lanes side by side, one per core of this
2-core machine: plain in one, incremental then both racings in the other (the two lanes take about as long).
Each mode reports its wall time and its process CPU time; on an idle machine they agree, and when other
jobs share the cores the CPU-time ratios are the fairer comparison.

    python bench/search_speed/run.py [--data-dir ../shared/data] [--k 2]
    python bench/search_speed/run.py --show bench/search_speed/results/amd-epyc-avx2.json [--condensed]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import torch

from blockprune import machine, models
from blockprune.data import load_windows
from blockprune.scoring.incremental import IncrementalScorer
from blockprune.scoring.plain import PlainScorer
from blockprune.plan import Plan
from blockprune.scoring.racing import RacingScorer
from blockprune.scoring.twoprecision import TwoPrecisionScorer, native_fast_dtype
from blockprune.search import candidate_units, greedy
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
                t = time.process_time()
                h = view.run(h, prep, frozenset(), i, i + 1)
                per_block[i] += time.process_time() - t
            t = time.process_time()
            view.window_nll(h, scorer.cache.batches[b])
            head += time.process_time() - t
        runs.append((per_block, head))
    runs.sort(key=lambda r: sum(r[0]) + r[1])
    return runs[1]


def work_seconds(view: BlockView, plan: Plan, per_block: list[float], head: float) -> tuple[float, float]:
    """(cached, plain): the block-forward work, priced at the dense per-block times, that the cached search
    cannot avoid (the first cache fill, then each candidate's blocks after itself, plus the head; refreshing
    the cache after a removal is free, the chosen candidate's own run computed it) and that plain scoring
    does (every kept block but the candidate, plus the head, per candidate)."""
    cached, plain = sum(per_block), 0.0
    removed: set[str] = set()
    for step in plan.steps:
        kept = [(i, t) for i, t in enumerate(per_block) if view.blocks[i].name not in removed]
        for name in step["scores"]:
            first = view.by_name[name].index
            cached += sum(t for i, t in kept if i > first) + head
            plain += sum(t for i, t in kept if i != first) + head
        removed.add(step["removed"])
    return cached, plain


# racing at its default z, and at z = 3 (more cautious, slower) for comparison
MODES = {"plain": PlainScorer, "incremental": IncrementalScorer, "racing": RacingScorer,
         "racing-z3": partial(RacingScorer, z=3.0),
         "fast": partial(TwoPrecisionScorer, fast_dtype=native_fast_dtype("cpu")),
         "fast-bf16": partial(TwoPrecisionScorer, fast_dtype="bf16")}
# one lane per core, about as long as each other where bf16 is native (where it is not, fast-bf16 is slow)
LANES = (["plain", "fast"], ["incremental", "racing", "racing-z3", "fast-bf16"])
FAST_MODES = ("fast", "fast-bf16")


def run_mode(mode: str, data_dir: str, k: int) -> dict:
    """One search in this process (one thread), timed by wall clock and by process CPU time."""
    torch.set_num_threads(1)
    model, tok = models.load("smollm2-135m")
    view = BlockView(model)
    windows = load_windows(str(Path(data_dir) / "calibration" / "alpaca_sample16.txt"), tok, 256)
    t0, c0 = time.perf_counter(), time.process_time()
    scorer = MODES[mode](view, windows)
    plan = Plan(method="blockpruner", model={}, calibration={}, options={})
    greedy(view, scorer, plan, candidate_units(view, "block", "mix"), num_blocks=k, ratio=None)
    out = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "removed": plan.removed,
           "ppl": plan.steps[-1]["ppl"], "windows": len(windows),
           "evaluated_windows": sum(s["evaluated_windows"] for s in plan.steps),
           "exhaustive_windows": sum(s["exhaustive_windows"] for s in plan.steps)}
    if mode in FAST_MODES:
        out["fast_dtype"] = scorer.fast_dtype
        out["precision"] = [s.get("precision") for s in plan.steps]
    if mode == "incremental":
        per_block, head = block_seconds(view, IncrementalScorer(view, windows))
        out["ideal_work"], out["plain_work"] = work_seconds(view, plan, per_block, head)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)  # internal: one mode per process
    ap.add_argument("--show", metavar="FILE", help="print the table of a results file and exit")
    ap.add_argument("--condensed", action="store_true", help="with --show: the short table bench/RESULTS.md shows")
    args = ap.parse_args()
    if args.show:
        out = json.loads(Path(args.show).read_text())
        print((condensed if args.condensed else table)(out), end="")
        return
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.data_dir, args.k)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    found: dict[str, dict] = {}

    def lane(modes: list[str]) -> None:
        for m in modes:
            p = subprocess.run([sys.executable, __file__, "--mode", m, "--data-dir", args.data_dir, "--k", str(args.k)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
            if p.returncode != 0:
                print(f"{m} failed (exit {p.returncode})", flush=True)
                return
            found[m] = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{m:12s} wall {found[m]['wall']:8.1f} s  cpu {found[m]['cpu']:8.1f} s  removed "
                  f"{found[m]['removed']}  ppl {found[m]['ppl']:.4f}", flush=True)

    lanes = [threading.Thread(target=lane, args=(modes,)) for modes in LANES]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    if set(found) != set(MODES):
        raise SystemExit(f"failed: {', '.join(m for m in MODES if m not in found)}")
    results = {m: found[m] for m in MODES}
    plain, inc = results["plain"], results["incremental"]
    # the dense model's throughput as plain scoring measured it, in the same run: the ideal time is the
    # unavoidable cached work at that speed
    ideal = plain["cpu"] * inc["ideal_work"] / inc["plain_work"]
    summary = {
        "incremental_speedup_cpu": plain["cpu"] / inc["cpu"], "incremental_speedup_wall": plain["wall"] / inc["wall"],
        "incremental_same_selection": inc["removed"] == plain["removed"],
        "incremental_ideal_cpu": ideal, "incremental_efficiency_cpu": ideal / inc["cpu"],
    }
    for k in ("racing", "racing-z3", *FAST_MODES):
        race, key = results[k], k.replace("-", "_")
        summary.update({
            f"{key}_speedup_cpu": plain["cpu"] / race["cpu"], f"{key}_speedup_wall": plain["wall"] / race["wall"],
            f"{key}_same_selection": race["removed"] == plain["removed"],
            f"{key}_ppl_rel_diff": abs(race["ppl"] - plain["ppl"]) / plain["ppl"],
            f"{key}_window_fraction": race["evaluated_windows"] / race["exhaustive_windows"]})
    command = "python bench/search_speed/run.py" + (f" --k {args.k}" if args.k != 2 else "")
    out = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine.describe(),
           "native_bf16": bool(native_fast_dtype("cpu")), "k": args.k, "windows": plain["windows"],
           "seqlen": 256, "modes": results, "summary": summary}
    path = machine.write_results(HERE / "results", out)
    print(table(out), end="")
    print(f"wrote {path.relative_to(HERE.parents[1])}")


def table(out: dict) -> str:
    """The Markdown of one results file: its command, date and machine, every mode's times and selections."""
    results, summary = out["modes"], out["summary"]
    plain, inc = results["plain"], results["incremental"]
    lines = [
        "# Search speed (bench/search_speed)", "",
        f"Command: `{out['command']}` ({out['date']}; machine: {machine.summary(out['machine'])}). SmolLM2-135M, "
        "fp32, one thread per mode, two lanes side by side (plain, fast | incremental, racing, racing-z3, fast-bf16), "
        f"`alpaca_sample16.txt` ({plain['windows']} windows x {out['seqlen']} tokens), BlockPruner mix, K = {out['k']}.",
        "",
        "| mode | CPU s | speed-up (CPU) | wall s | speed-up (wall) | candidate-windows run | removed | final calib. ppl |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for k, r in results.items():
        lines.append(f"| {k} | {r['cpu']:.1f} | {plain['cpu'] / r['cpu']:.2f}x | {r['wall']:.1f} | "
                     f"{plain['wall'] / r['wall']:.2f}x | {r['evaluated_windows']}/{r['exhaustive_windows']} | "
                     f"{', '.join(r['removed'])} | {r['ppl']:.4f} |")
    lines += ["", f"- incremental selections identical to plain: {summary['incremental_same_selection']}"]
    for k in ("racing", "racing-z3", *FAST_MODES):
        key = k.replace("-", "_")
        lines.append(f"- {k} selections identical to plain: {summary[key + '_same_selection']}; final ppl relative "
                     f"difference {summary[key + '_ppl_rel_diff']:.2e}")
    lines += [f"- exact-mode efficiency: ideal {summary['incremental_ideal_cpu']:.1f} CPU s (the unavoidable cached "
              f"work, {inc['ideal_work'] / inc['plain_work']:.3f} of plain scoring's by the dense per-block times, at "
              f"the throughput plain scoring measured) / measured {inc['cpu']:.1f} CPU s = "
              f"{summary['incremental_efficiency_cpu']:.2f}"]
    for k in FAST_MODES:
        r = results[k]
        if r["fast_dtype"] is None:
            lines.append(f"- {k}: no native fast precision on this machine, so it ran as plain racing")
            continue
        steps = [p for p in r["precision"] if p]
        margins = ", ".join(f"{p['margin']:.4f}" for p in steps)
        errors = ", ".join(f"{p['measured_error']:.4f}" for p in steps)
        decided = "; ".join(", ".join(p["decided_in_full"]) for p in steps)
        lines.append(f"- {k}: {r['fast_dtype']} candidate-windows {sum(p['fast_windows'] for p in steps)}, fp32 "
                     f"{sum(p['full_windows'] for p in steps)}; decided in fp32, per step: {decided}; margins "
                     f"{margins} nats; largest error measured among the decided candidates afterwards {errors}")
    return "\n".join(lines) + "\n"


#: how bench/RESULTS.md's short table names the modes
LABELS = {"racing": "racing (z = 2.5, default)", "racing-z3": "racing, z = 3",
          "fast-bf16": "fast-bf16 (forced bf16 race, fp32 decisions)"}


def condensed(out: dict) -> str:
    """The short table of one results file: CPU times and selections; a mode that raced in a fast precision
    counts its candidate-windows in that precision and in fp32 apart."""
    results = out["modes"]
    lines = ["| mode | CPU s | speed-up (CPU) | candidate-windows | removed | final calib. ppl |",
             "|---|---:|---:|---:|---|---:|"]
    for k, r in results.items():
        windows, label = f"{r['evaluated_windows']}/{r['exhaustive_windows']}", LABELS.get(k, k)
        if r.get("fast_dtype"):
            steps = [p for p in r["precision"] if p]
            windows = (f"{sum(p['fast_windows'] for p in steps)} {r['fast_dtype']} + "
                       f"{sum(p['full_windows'] for p in steps)} fp32")
        if k == "fast":
            ran = f"{r['fast_dtype']} race, fp32 decisions" if r["fast_dtype"] else "racing"
            label = f"fast (as `auto` runs it here: {ran})"
        lines.append(f"| {label} | {r['cpu']:.1f} | {results['plain']['cpu'] / r['cpu']:.2f}x | {windows} | "
                     f"{', '.join(r['removed'])} | {r['ppl']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
