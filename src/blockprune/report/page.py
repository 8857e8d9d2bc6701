"""The report itself: report.md, report.json and figures/ written from the folders given, each section
from the module that owns it."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .. import atomic, monitor
from ..evaluate.table import shots_note
from ..plan import Plan, expand
from .figures import plot_accuracy, plot_architecture, plot_importance, plot_paths, removal_path
from .loading import distinct, load_folder, unique_labels
from .tables import add_recovery, cost_table, healing_section, markdown_table, table_row
from .text import describe_width, monitor_lines, race_note, scorer_note


def build(dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write out/report.md, out/report.json and out/figures/*.png; returns the Markdown path."""
    entries = distinct([load_folder(d) for d in dirs])
    unique_labels(entries)
    out = Path(out)
    figs = out / "figures"  # made by the first figure written: no empty folder when there is nothing to draw
    md = ["# blockprune report", ""]
    runs = [e for e in entries if e.plan is not None]
    if runs:
        plot_paths(runs, figs / "removal_path.png")
    for e in runs:
        layers = e.plan.model.get("layers") or _layers_from_scores(e.plan)
        if e.plan.steps:
            plot_importance(e.plan, layers, figs / f"{e.label}_importance.png")
            e.figures["importance"] = f"figures/{e.label}_importance.png"
        plot_architecture(e.plan, layers, figs / f"{e.label}_architecture.png")
        e.figures["architecture"] = f"figures/{e.label}_architecture.png"
    rows = [r for r in (table_row(e) for e in entries) if r is not None]
    accuracy = False
    if rows:
        recovery = add_recovery(rows)
        shots = shots_note(r.get("num_fewshot") or 0 for r in rows)
        md += ["## Comparison (BlockPruner Table 1 layout)", "",
               "WikiText-2 perplexity (lower is better); accuracy in % (acc_norm where the task has it, "
               f"acc for WinoGrande), {shots}; Avg. is the mean of the five tasks as the BlockPruner "
               "paper reports it (columns after it, such as custom tasks, are not part of it)"
               + ("; % of dense is Avg. over the dense model's Avg." if recovery else "."), "",
               markdown_table(rows, recovery), ""]
        accuracy = plot_accuracy(rows, figs / "accuracy.png")
        if accuracy:
            md += ["![zero-shot accuracy per task](figures/accuracy.png)", ""]
        subsets = {json.dumps(r["subset"], sort_keys=True) for r in rows}
        if len(subsets) > 1:
            md += ["**Note:** the rows were evaluated on different subsets (windows / documents); compare with care.", ""]
        md += cost_table(entries)
    md += healing_section(entries)
    for e in runs:
        p = e.plan
        final = p.outcome
        md += [f"## {e.label}", "",
               f"- method `{p.method}` on `{p.model.get('source')}` ({p.model.get('params', 0):,} parameters), "
               f"status {p.status}",
               f"- calibration: {p.calibration.get('source')}, {p.calibration.get('windows')} windows × "
               f"{p.calibration.get('seqlen')} tokens",
               f"- removed ({len(final.removed)}): {', '.join(final.removed) or 'nothing'}"
               if p.width is None else f"- narrowed: {describe_width(p)}",
               f"- calibration ppl {p.dense.get('ppl', math.nan):.3f} dense → "
               f"{final.ppl if final.ppl is not None else math.nan:.3f} at ratio {final.ratio:.3f}"]
        if p.steps:
            md += [f"- candidates ranked by: {scorer_note(p)}" + race_note(p)]
        md += monitor_lines(p) + [""]
        for name, rel in e.figures.items():
            md += [f"![{name}]({rel})", ""]
    if runs:
        title = "Calibration and validation" if any(monitor.path(e.plan) for e in runs) else "Calibration"
        md += [f"## {title} perplexity along the removal path", "", "![removal path](figures/removal_path.png)", ""]
    report = {"format": "blockprune.report/1", "table": rows,
              "healing": {e.label: {k: v for k, v in e.healing.items() if k not in ("history", "val")}
                          for e in entries if e.healing},
              "runs": [{"label": e.label, "path": str(e.path), "method": e.plan.method, "removed": e.plan.removed,
                        "path_ratio": removal_path(e.plan)[0], "path_ppl": removal_path(e.plan)[1],
                        "path_validation_ppl": monitor.path(e.plan), "monitor": monitor.check(e.plan),
                        "figures": e.figures} for e in runs],
              "figures": {**({"removal_path": "figures/removal_path.png"} if runs else {}),
                          **({"accuracy": "figures/accuracy.png"} if accuracy else {})}}
    atomic.write_json(out / "report.json", report)
    atomic.write_text(out / "report.md", "\n".join(md))
    return out / "report.md"


def _layers_from_scores(plan: Plan) -> int:
    idx = [int(b.split(".")[1]) for s in plan.steps for u in s["scores"] for b in expand(u)]
    return max(idx) + 1 if idx else 1
