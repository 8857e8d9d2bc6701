"""Replay racing on recorded per-window scores: how many candidate-windows each setting would run, and
whether it would choose what exhaustive scoring chooses, without running the model again.

The scores are every candidate's NLL on every calibration window at each step of the benchmark's search
(SmolLM2-135M, alpaca_sample16.txt, mix, K = 2), written once by `--record` (about 8 CPU minutes) into this
kind of machine's own file with its machine record (its block times price the candidate-windows, and bf16
scores depend on the CPU's bf16 arithmetic), then replayed:

    python bench/search_speed/replay.py --record [--data-dir ../shared/data]   # -> window_nll/<machine tag>.json
    python bench/search_speed/replay.py --record-fast                         # -> window_nll_bf16/<machine tag>.json
    python bench/search_speed/replay.py [--nll FILE] [--nll-fast FILE]         # the tables below

By default it replays the committed window_nll.json (2026-11-23) and window_nll_bf16.json (2026-12-03),
written before machine records; after `--record` or `--record-fast`, the file just written. Each table
ends with the machine its scores were recorded on.

The race is blockprune.scoring.racing.race itself, fed the recorded scores; a schedule is the windows per round and
whether the noise floor is used. The last two columns replay the same scores with the windows shuffled, to
show how often each setting would still choose exhaustive scoring's blocks, and how much worse (in
calibration perplexity, relative) the worst choice that differed was.
"Modelled speed-up" prices each candidate-window at the dense model's per-block CPU time (blocks after the
candidate, plus the head) against plain scoring; it leaves out the cache's first fill (the refresh after a removal
reuses the chosen candidate's run).

With window_nll_bf16.json (the same candidates' NLLs from a bf16 copy of the model, `--record-fast`), a
second table replays two-precision racing (`--scorer fast`, blockprune.scoring.twoprecision) the same way: the race
in bf16 with the margin its probe measures, the near-ties decided on their fp32 scores."""
from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch

from blockprune import machine
from blockprune.atomic import write_text
from blockprune.scoring import twoprecision
from blockprune.scoring.racing import race

HERE = Path(__file__).resolve().parent
# name: (windows per round, floor_from); floor_from 0 races without the noise floor
SCHEDULES = {"one window a round, noise floor of the best 8 (current)": ([1] * 8, 8),
             "first 2 windows, then 1 a round, no floor (before)": ([2, 1, 1, 1, 1, 1, 1], 0)}
ORDERS = 300  # shuffled window orders for the robustness column


def record(data_dir: str, fast: bool = False, fp32_record: Path | None = None) -> Path:
    """Record the per-window NLLs (the bf16 ones along `fp32_record`'s path) into this machine's file."""
    from blockprune import models
    from blockprune.data import load_windows
    from blockprune.scoring.incremental import BoundaryCache
    from blockprune.view import BlockView
    import time

    torch.set_num_threads(1)
    model, tok = models.load("smollm2-135m", "bf16" if fast else "fp32")
    view = BlockView(model)
    windows = load_windows(str(Path(data_dir) / "calibration" / "alpaca_sample16.txt"), tok, 256)
    cache = BoundaryCache(view, windows)
    # the bf16 record follows the fp32 record's path (exhaustive fp32 choices), as the two-precision search does
    path = [s["removed_before"] for s in json.loads(fp32_record.read_text())["steps"]] if fast else None
    # per-block and head CPU seconds of one dense window, to price candidate-windows
    prep, h = cache.preps[0], cache.preps[0].hidden
    per_block = []
    for i in range(len(view.blocks)):
        t = time.process_time()
        h = view.run(h, prep, frozenset(), i, i + 1)
        per_block.append(time.process_time() - t)
    t = time.process_time()
    view.window_nll(h, cache.batches[0])
    head = time.process_time() - t
    removed, steps = frozenset(), []
    for i in range(2):
        if path is not None:
            removed = frozenset(path[i])
        cache.sync(removed)
        nll = {b.name: [float(cache.final_nll(k, removed | {b.name}, b.index)[0]) for k in range(len(cache.batches))]
               for b in view.blocks if b.name not in removed}
        steps.append({"removed_before": sorted(removed), "nll": nll})
        removed = removed | {min(nll, key=lambda n: sum(nll[n]))}
    out = {"machine": machine.describe(), "blocks": [b.name for b in view.blocks], "block_seconds": per_block,
           "head_seconds": head, "steps": steps}
    written = machine.results_file(HERE / ("window_nll_bf16" if fast else "window_nll"))
    write_text(written, json.dumps(out, indent=1) + "\n")
    print(f"wrote {written}")
    return written


def replay(rec: dict, z: float, schedule: list[int], floor_from: int,
           order: list[int]) -> tuple[int, float, float, bool, float]:
    """Race both recorded steps with windows taken in `order`; candidate-windows, plain and racing cost,
    whether both choices equal exhaustive scoring's, and the larger relative calibration-perplexity loss of
    a step's choice against exhaustive scoring's (0 when they agree)."""
    blocks, secs, head = rec["blocks"], rec["block_seconds"], rec["head_seconds"]
    windows = sum(schedule)
    evals = plain = cost = loss = 0.0
    same = True
    for step in rec["steps"]:
        gone = set(step["removed_before"])
        names = list(step["nll"])
        price = {n: sum(s for b, s in zip(blocks[blocks.index(n) + 1:], secs[blocks.index(n) + 1:]) if b not in gone)
                 + head for n in names}
        plain += len(names) * windows * (sum(s for b, s in zip(blocks, secs) if b not in gone) + head)
        starts = [sum(schedule[:b]) for b in range(len(schedule))]

        def look(c: int, b: int) -> torch.Tensor:
            nonlocal evals, cost
            evals += schedule[b]
            cost += schedule[b] * price[names[c]]
            return torch.tensor([step["nll"][names[c]][order[i]] for i in range(starts[b], starts[b] + schedule[b])])

        nll = race(len(names), schedule, look, z, floor_from)
        complete = [c for c in range(len(names)) if nll[c].numel() == windows]
        chosen = min(complete, key=lambda c: (float(nll[c].mean()), c))
        best = min(names, key=lambda n: sum(step["nll"][n]))
        same &= names[chosen] == best
        loss = max(loss, math.exp((sum(step["nll"][names[chosen]]) - sum(step["nll"][best])) / windows) - 1)
    return int(evals), plain, cost, same, loss


def replay_fast(rec: dict, fast: dict, z: float, order: list[int]) -> tuple[int, int, bool, float]:
    """Two-precision racing on the recorded steps, windows in `order`: bf16 and fp32 candidate-windows,
    whether both choices equal exhaustive fp32 scoring's, and the larger relative calibration-perplexity
    loss of a step's choice against it."""
    n_fast = n_full = 0
    loss, same = 0.0, True
    for step, fstep in zip(rec["steps"], fast["steps"]):
        names = list(step["nll"])
        windows = len(step["nll"][names[0]])
        full_seen: set[tuple[int, int]] = set()

        def per_window(table: dict, c: int, lo: int, hi: int) -> torch.Tensor:
            return torch.tensor([table[names[c]][order[i]] for i in range(lo, hi)], dtype=torch.float64)

        def look(c: int, b: int) -> torch.Tensor:
            nonlocal n_fast
            n_fast += 1
            return per_window(fstep["nll"], c, b, b + 1)

        def full(c: int, lo: int, hi: int) -> torch.Tensor:
            nonlocal n_full
            for i in range(lo, hi):
                if (c, i) not in full_seen:
                    full_seen.add((c, i))
                    n_full += 1
            return per_window(step["nll"], c, lo, hi)

        margin = 0.0

        def margin_from(best: list[int], nb: int) -> float:
            nonlocal margin
            f = {c: per_window(fstep["nll"], c, 0, nb) for c in best}
            F = {c: full(c, 0, nb) for c in best}
            margin = twoprecision.SAFETY * twoprecision.largest_error(f, F, best)
            return margin

        nll = race(len(names), [1] * windows, look, z, 8, margin_from)
        complete = [c for c in range(len(names)) if nll[c].numel() == windows]
        leader = min(complete, key=lambda c: (float(nll[c].mean()), c))
        contenders = {leader} | {c for c in complete if float((nll[c] - nll[leader]).mean()) <= margin}
        chosen = min(contenders, key=lambda c: (float(full(c, 0, windows).mean()), c))
        best = min(names, key=lambda n: sum(step["nll"][n]))
        same &= names[chosen] == best
        loss = max(loss, math.exp((sum(step["nll"][names[chosen]]) - sum(step["nll"][best])) / windows) - 1)
    return n_fast, n_full, same, loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--record-fast", action="store_true")
    ap.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--nll", type=Path, default=HERE / "window_nll.json", help="fp32 per-window scores to replay")
    ap.add_argument("--nll-fast", type=Path, default=HERE / "window_nll_bf16.json", help="bf16 ones, along its path")
    args = ap.parse_args()
    if args.record:
        args.nll = record(args.data_dir)
    if args.record_fast:
        args.nll_fast = record(args.data_dir, fast=True, fp32_record=args.nll)
    rec = json.loads(args.nll.read_text())
    exhaustive = sum(len(s["nll"]) for s in rec["steps"]) * len(next(iter(rec["steps"][0]["nll"].values())))
    print("| schedule | z | candidate-windows | modelled speed-up vs plain | same selections "
          f"| same selections over {ORDERS} shuffled window orders | worst step's calib. ppl loss over them |\n"
          "|---|---:|---:|---:|---|---:|---:|")
    rng = random.Random(0)
    orders = [rng.sample(range(8), 8) for _ in range(ORDERS)]
    for name, (schedule, floor_from) in SCHEDULES.items():
        for z in (2.0, 2.5, 3.0):
            evals, plain, cost, same, _ = replay(rec, z, schedule, floor_from, list(range(8)))
            shuffled = [replay(rec, z, schedule, floor_from, o) for o in orders]
            robust = sum(r[3] for r in shuffled)
            worst = max(r[4] for r in shuffled)
            print(f"| {name} | {z} | {evals}/{exhaustive} | {plain / cost:.2f}x | {same} | {robust}/{ORDERS} "
                  f"| {worst:.2%} |")
    print("\n" + "\n".join(machine.table_lines({f"scores and block times ({args.nll.name})": [rec.get("machine")]})))

    fast_path = args.nll_fast
    if not fast_path.exists():
        print(f"\n(no {fast_path.name}: run --record-fast for the two-precision table)")
        return
    fast = json.loads(fast_path.read_text())
    print("\n| two-precision racing | z | bf16 candidate-windows | fp32 candidate-windows | same selections "
          f"| same selections over {ORDERS} shuffled window orders | worst step's calib. ppl loss over them |\n"
          "|---|---:|---:|---:|---|---:|---:|")
    for z in (2.5, 3.0):
        n_fast, n_full, same, _ = replay_fast(rec, fast, z, list(range(8)))
        shuffled = [replay_fast(rec, fast, z, o) for o in orders]
        print(f"| bf16 race, fp32 decision | {z} | {n_fast}/{exhaustive} | {n_full}/{exhaustive} | {same} "
              f"| {sum(r[2] for r in shuffled)}/{ORDERS} | {max(r[3] for r in shuffled):.2%} |")
    print("\n" + "\n".join(machine.table_lines({f"bf16 scores ({fast_path.name})": [fast.get("machine")]})))


if __name__ == "__main__":
    main()
