"""Does choosing among near-tied candidates by validation perplexity help held-out results? (issue 19, item 2)

BlockPruner's greedy search removes, at each step, the block whose removal gives the lowest calibration
perplexity; bench/compare/smollm2-r20's search often had a runner-up within 1% of that (18 of its 18 steps
had one within 1.7%). This runs the same greedy search (SmolLM2, 20%, mix blocks, the exact incremental
scorer, Alpaca calibration rows sampled with seed 42) with one change: every candidate whose calibration
perplexity is within MARGIN of the best (at most TIES of them, best first) is also scored on the overfitting
monitor's validation text (Alpaca rows held out from the calibration sample), and the lowest validation
perplexity is removed. Then the result is evaluated on what neither choice saw: the quick WikiText-2 subset.
The plain greedy search at the same calibration is the baseline (its plan: BASELINE).

    python bench/monitor/tiebreak.py [--rows 4] [--margin 0.01] [--ties 4] [--data-dir ../shared/data]
    python bench/monitor/tiebreak.py --show bench/monitor/tiebreak/n4-m0.01/result.json   # its table

Resumable: each finished step is saved to OUT/steps.json (its choices are exact scores' and do not depend on
the CPU). Writes this kind of machine's own OUT/<machine tag>.json with its machine record, as its seconds
do (OUT: bench/monitor/tiebreak/n<rows>-m<margin>); OUT/result.json is the 2026-12-03 run's, written before
machine records.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from blockprune import machine, models
from blockprune.atomic import write_text
from blockprune.data import heldout_windows, load_windows
from blockprune.evaluate import QUICK_WINDOWS
from blockprune.options import PruneOptions
from blockprune.window_nll import perplexity
from blockprune.plan import Plan
from blockprune.scoring import make_scorer
from blockprune.search import candidate_units
from blockprune.view import BlockView

HERE = Path(__file__).resolve().parent
BASELINE = {4: HERE.parent / "calibration_size" / "smollm2-r20" / "blockpruner-n4",
            16: HERE.parent / "calibration_size" / "smollm2-r20" / "blockpruner-n16"}
SEQLEN, VAL_ROWS, RATIO, SEED = 128, 64, 0.2, 42


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--margin", type=float, default=0.01, help="relative calibration-perplexity margin of a near tie")
    ap.add_argument("--ties", type=int, default=4, help="near-tied candidates scored on validation, at most")
    ap.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--show", metavar="FILE", help="print the table of a results file; runs nothing")
    args = ap.parse_args()
    if args.show:
        print(table(json.loads(Path(args.show).read_text(encoding="utf-8"))))
        return
    torch.set_num_threads(1)
    out = HERE / "tiebreak" / f"n{args.rows}-m{args.margin:g}"
    out.mkdir(parents=True, exist_ok=True)
    model, tok = models.load("smollm2-135m")
    view = BlockView(model)
    cal = load_windows("alpaca", tok, SEQLEN, nsamples=args.rows, seed=SEED, data_dir_=args.data_dir)
    val = heldout_windows("alpaca", tok, SEQLEN, calibration_nsamples=args.rows, nsamples=VAL_ROWS, seed=SEED,
                          data_dir_=args.data_dir)
    scorer = make_scorer(view, cal, PruneOptions(scorer="incremental", ratio=RATIO))
    cands = candidate_units(view, "block", "mix")
    state = out / "steps.json"
    steps = json.loads(state.read_text()) if state.exists() else []
    t0 = time.perf_counter()
    while True:
        removed = frozenset(b for s in steps for b in next(u.blocks for u in cands if u.name == s["removed"]))
        params = view.removed_params(removed)
        pool = [u for u in cands if not u.blocks & removed and params + u.params <= RATIO * view.total_params]
        if not pool:
            break
        scores = scorer.score(removed, [u.blocks for u in pool]).scores
        ranked = sorted((s if math.isfinite(s) else math.inf, u.index, u) for s, u in zip(scores, pool))
        best = ranked[0][0]
        ties = [(s, u) for s, _, u in ranked[:args.ties] if s <= best * (1 + args.margin)]
        vals = {u.name: perplexity(view, val, removed | u.blocks, batch_size=8) for _, u in ties} if len(ties) > 1 else {}
        pick = min(ties, key=lambda t: vals.get(t[1].name, 0.0))[1]
        steps.append({"removed": pick.name, "calibration_ppl": dict((u.name, s) for s, u in ties)[pick.name],
                      "greedy_choice": ranked[0][2].name, "ties": {u.name: s for s, u in ties}, "validation": vals})
        write_text(state, json.dumps(steps, indent=1) + "\n")
        print(len(steps), pick.name, "(greedy: %s)" % ranked[0][2].name, {k: round(v, 3) for k, v in vals.items()},
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    removed = frozenset(b for s in steps for b in next(u.blocks for u in cands if u.name == s["removed"]))
    wiki = load_windows("wikitext2", tok, 2048, data_dir_=args.data_dir, max_windows=QUICK_WINDOWS)
    base = Plan.load(BASELINE[args.rows]) if args.rows in BASELINE else None
    rows = {"tiebreak": {"removed": [s["removed"] for s in steps], "blocks": removed}}
    if base is not None:
        rows["greedy"] = {"removed": list(base.removed), "blocks": base.removed_blocks}
    result = {"command": f"python bench/monitor/tiebreak.py --rows {args.rows} --margin {args.margin:g} --ties {args.ties}",
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine.describe(), "calibration_rows": args.rows, "seqlen": SEQLEN,
              "validation_rows": VAL_ROWS, "ratio": RATIO, "steps_changed": sum(s["removed"] != s["greedy_choice"] for s in steps),
              "search_seconds_this_process": round(time.perf_counter() - t0)}
    for name, r in rows.items():
        result[name] = {"removed": r["removed"], "ratio": view.removed_params(r["blocks"]) / view.total_params,
                        "calibration_ppl": perplexity(view, cal, r["blocks"]),
                        "validation_ppl": perplexity(view, val, r["blocks"], batch_size=8),
                        "wikitext2_quick_ppl": perplexity(view, wiki, r["blocks"])}
        print(name, {k: v for k, v in result[name].items() if k != "removed"}, flush=True)
    write_text(machine.results_file(out), json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """RESULTS' table of a results record: the plain greedy search (when its baseline plan was there) and
    the one choosing near ties by validation, and the machine it ran on."""
    titles = {"greedy": "greedy (calibration perplexity)", "tiebreak": "near ties chosen by validation"}
    lines = ["| Search | Removed | Ratio | Calibration PPL | Validation PPL | WikiText-2 PPL (quick) |",
             "|---|---|---|---|---|---|"]
    for name in [n for n in ("greedy", "tiebreak") if n in result]:
        r = result[name]
        lines.append(f"| {titles[name]} | {len(r['removed'])} | {r['ratio']:.1%} | {r['calibration_ppl']:.2f} | "
                     f"{r['validation_ppl']:.2f} | {r['wikitext2_quick_ppl']:.2f} |")
    return "\n".join([*lines, "", *machine.table_lines({"every figure": [result.get("machine")]})])


if __name__ == "__main__":
    main()
