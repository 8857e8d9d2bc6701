"""Would the overfitting monitor have seen it? The removal sets of bench/compare/smollm2-r20, re-scored.

bench/compare/smollm2-r20 calibrated every method on 4 Alpaca rows (128-token windows) and evaluated it on the
standard quick subset of WikiText-2. For each method's final removal set this scores the monitor's default
validation text, Alpaca rows held out from that calibration sample (64 rows, 128-token windows), and prints
the monitor's ratio (blockprune.monitor.overfit_ratio: log rise of validation perplexity over log rise of
calibration perplexity) with held-out rows and with WikiText-2 as the validation text, and which removal
set the held-out rows would choose among the perplexity searches against which set WikiText-2 favours.
Writes this kind of machine's own files, bench/monitor/probe/<machine tag>.json (with its machine record)
and .md (the page); bench/monitor/results.json and RESULTS.md are the 2026-12-03 run's, written before
machine records (`--show` prints the page of either record).

    python bench/monitor/probe.py [--data-dir ../shared/data]
    python bench/monitor/probe.py --show bench/monitor/results.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from blockprune import machine, models
from blockprune.atomic import write_text
from blockprune.data import heldout_windows
from blockprune.monitor import overfit_ratio
from blockprune.window_nll import perplexity
from blockprune.plan import Plan
from blockprune.view import BlockView

HERE = Path(__file__).resolve().parent
COMPARE = HERE.parent / "compare" / "smollm2-r20"
SEARCHES = ("blockpruner", "blockpruner-refined", "layer-ppl", "blockpruner-js")  # removal sets to choose among
ROWS = 64


def wikitext(folder: Path) -> float:
    return json.loads((folder / "eval.json").read_text(encoding="utf-8"))["perplexity"]["wikitext2"]["ppl"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--show", metavar="FILE", help="print the page of a results file; runs nothing")
    args = ap.parse_args()
    if args.show:
        print(page(json.loads(Path(args.show).read_text(encoding="utf-8"))), end="")
        return
    torch.set_num_threads(1)
    model, tok = models.load("smollm2-135m")
    view = BlockView(model)
    plans = {d.name: Plan.load(d) for d in sorted(COMPARE.iterdir()) if (d / "plan.json").exists()}
    cal = next(iter(plans.values())).calibration
    val = heldout_windows("alpaca", tok, cal["seqlen"], calibration_nsamples=cal["rows"], nsamples=ROWS,
                          seed=cal["seed"], data_dir_=args.data_dir)
    val0, wiki0 = perplexity(view, val), wikitext(COMPARE / "dense")
    rows = {}
    for name, plan in plans.items():
        cal0, cal1 = plan.dense["ppl"], plan.steps[-1]["ppl"]
        v, w = perplexity(view, val, plan.removed_blocks), wikitext(COMPARE / name)
        rows[name] = {"calibration_ppl": cal1, "heldout_ppl": v, "wikitext2_ppl": w,
                      "ratio_heldout": overfit_ratio(cal0, cal1, val0, v), "ratio_wikitext2": overfit_ratio(cal0, cal1, wiki0, w)}
        print(name, rows[name], flush=True)
    by_val = min(SEARCHES, key=lambda n: rows[n]["heldout_ppl"])
    by_wiki = min(SEARCHES, key=lambda n: rows[n]["wikitext2_ppl"])
    out = {"command": "python bench/monitor/probe.py", "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": machine.describe(),
           "validation": {"source": "alpaca held out", "rows": ROWS, "windows": len(val), "seqlen": cal["seqlen"],
                          "dense_ppl": val0}, "wikitext2_dense_ppl": wiki0, "methods": rows,
           "chosen_by_heldout": by_val, "best_on_wikitext2": by_wiki}
    (HERE / "probe").mkdir(exist_ok=True)
    write_text(machine.results_file(HERE / "probe"), json.dumps(out, indent=2) + "\n")
    write_text(machine.results_file(HERE / "probe", ".md"), page(out))
    print(page(out), end="")


def page(out: dict) -> str:
    """The Markdown page of a results record: the table, the choice, and the machine it ran on."""
    v, rows = out["validation"], out["methods"]
    by_val, by_wiki = out["chosen_by_heldout"], out["best_on_wikitext2"]
    lines = ["# Would the monitor have seen it? (bench/monitor)", "",
             f"Command: `{out['command']}` ({out['date']}). The final removal sets of bench/compare/smollm2-r20 "
             f"(SmolLM2, 20%, 4 Alpaca calibration rows in 128-token windows); validation: {v['rows']} held-out Alpaca rows "
             f"({v['windows']} windows of {v['seqlen']} tokens, dense {v['dense_ppl']:.3f}); WikiText-2: the quick subset from each "
             f"eval.json (dense {out['wikitext2_dense_ppl']:.3f}). Ratio: log rise of validation over log rise of calibration perplexity "
             f"(the monitor's rule).", "",
             "| method | calib. ppl | held-out ppl | WikiText-2 ppl | ratio, held-out | ratio, WikiText-2 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['calibration_ppl']:.2f} | {r['heldout_ppl']:.2f} | {r['wikitext2_ppl']:.1f} | "
                     f"{r['ratio_heldout']:.2f} | {r['ratio_wikitext2']:.2f} |")
    lines += ["", f"Among the perplexity searches ({', '.join(SEARCHES)}), the lowest held-out perplexity picks "
                  f"**{by_val}** (WikiText-2 {rows[by_val]['wikitext2_ppl']:.1f}); the best on WikiText-2 is "
                  f"**{by_wiki}** ({rows[by_wiki]['wikitext2_ppl']:.1f}).", "",
              *machine.table_lines({"every figure": [out.get("machine")]}), ""]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
