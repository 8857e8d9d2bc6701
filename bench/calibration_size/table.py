"""Table and figure of the calibration-size curve (bench/calibration_size/run.sh): per method and number of
calibration rows, the calibration, validation (the monitor's held-out Alpaca rows) and WikiText-2 (quick
subset) perplexity of the pruned model, the monitor's verdict, the monitor's ratio had WikiText-2 been the
validation text (from OUT/dense's WikiText-2 perplexity, when run.sh has evaluated it) and the search time.

    python bench/calibration_size/table.py bench/calibration_size/smollm2-r20

Writes OUT/table.md, OUT/table.json and OUT/curve.png (the BlockPruner paper's Figure 7 right, with
ShortGPT beside BlockPruner); runs not finished yet are left out and listed. The table names the machines
its rows came from (each run's timings.json and eval.json records; "not recorded" where they hold none)."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from blockprune import atomic, machine, monitor, timings
from blockprune.plan import Plan

METHODS = ("blockpruner", "shortgpt")
ROWS = (4, 16, 64, 256)
PANELS = (("calibration", "calibration perplexity"), ("validation", "validation perplexity (held-out Alpaca)"),
          ("wikitext2", "WikiText-2 perplexity (quick subset)"))


def wikitext2(ev: Path) -> dict | None:
    return json.loads(ev.read_text())["perplexity"]["wikitext2"] if ev.exists() else None


def read(run: Path, wikitext2_dense: float | None) -> dict | None:
    """One finished run's figures (None until its search and evaluation are both done)."""
    ev = run / "eval" / "eval.json"
    if not (run / "plan.json").exists() or not ev.exists():
        return None
    plan = Plan.load(run)
    if plan.status != "done" or not plan.steps:
        return None
    verdict = monitor.check(plan) or {}
    wt = wikitext2(ev)
    cal0, cal = plan.dense["ppl"], plan.steps[-1]["ppl"]
    return {"method": plan.method, "rows": plan.calibration["rows"], "windows": plan.calibration["windows"],
            "seqlen": plan.calibration["seqlen"], "removed": len(plan.removed), "ratio": plan.steps[-1]["ratio"],
            "calibration": cal, "calibration_dense": cal0,
            "validation": verdict.get("pruned_ppl"), "validation_dense": verdict.get("dense_ppl"),
            "log_ratio": verdict.get("log_ratio"), "warning": bool(verdict.get("warning")),
            "wikitext2": wt["ppl"], "wikitext2_windows": wt["windows"], "wikitext2_dense": wikitext2_dense,
            "log_ratio_wikitext2": (monitor.overfit_ratio(cal0, cal, wikitext2_dense, wt["ppl"])
                                    if wikitext2_dense else None),
            "search_s": sum(timings.step_seconds(run)),
            "validation_share": timings.load(run / timings.FILE, warn=False).get("validation_share")}


def markdown(rows: list[dict]) -> str:
    f = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    share = lambda x: "–" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = ["| Method | Rows | Windows | Removed | Ratio | Calibration PPL | Validation PPL | log rise val/cal | "
             "Monitor | WikiText-2 PPL | log rise WikiText-2/cal | Search | Monitor share |", "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['method']} | {r['rows']} | {r['windows']} x {r['seqlen']} | {r['removed']} | "
                     f"{100 * r['ratio']:.1f}% | {f(r['calibration'])} | {f(r['validation'])} | {f(r['log_ratio'])} | "
                     f"{'warns' if r['warning'] else 'quiet'} | {f(r['wikitext2'])} | {f(r['log_ratio_wikitext2'])} | "
                     f"{r['search_s'] / 60:.1f} min | "
                     f"{share(r['validation_share'])} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.8), layout="constrained")
    for ax, (key, title) in zip(axes, PANELS):
        for m in METHODS:
            pts = sorted((r["rows"], r[key]) for r in rows if r["method"] == m and r[key] is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        dense = sorted({(r["rows"], r[key + "_dense"]) for r in rows if r.get(key + "_dense") is not None})
        if dense:  # the dense model on the same text: each size's calibration sample is a different text
            ax.plot(*zip(*dense), color="grey", linestyle="--", marker=".", label="dense model")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ROWS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("calibration rows (Alpaca, seed 42)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SmolLM2-135M at 20%: perplexity of the pruned model against calibration size", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic.write_bytes(path, buf.getvalue())
    plt.close(fig)


def page(out: Path) -> tuple[str, dict]:
    """table.md's text and table.json's record for a folder."""
    dense = wikitext2(out / "dense" / "eval" / "eval.json")
    rows, missing = [], []
    records = {"dense": machine.folder_records(out / "dense" / "eval")} if dense else {}
    for m in METHODS:
        for n in ROWS:
            run = out / f"{m}-n{n}"
            r = read(run, dense and dense["ppl"])
            (rows.append(r) if r else missing.append(run.name))
            if r:
                records[run.name] = machine.folder_records(run) + machine.folder_records(run / "eval")
    md = markdown(rows) + ("\n\nNot finished: " + ", ".join(missing) if missing else "")
    if dense:
        md += f"\n\nDense model: WikiText-2 {dense['ppl']:.2f} ({dense['windows']} windows)."
    md += "\n\n" + "\n\n".join(machine.table_lines(records))
    return md, {"rows": rows, "missing": missing}


def main(folder: str) -> None:
    out = Path(folder)
    md, table = page(out)
    atomic.write_text(out / "table.md", md + "\n")
    atomic.write_json(out / "table.json", table)
    if table["rows"]:
        figure(table["rows"], out / "curve.png")
    print(md)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
