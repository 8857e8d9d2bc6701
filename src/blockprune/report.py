"""Reports: run folders (plan.json) and eval folders (eval.json) as a Markdown page, a JSON file and
PNG figures that can be read at a glance.

Figures per run: block importance at each search step (layers × attention/MLP, colour = each candidate's
calibration perplexity relative to the step's best, clipped; grey = already removed; hatched = left a
race early), calibration perplexity (and the monitor's validation perplexity) against pruning ratio along
the removal path with the unit removed at each point (all runs on one plot), and the pruned architecture
(which blocks remain in each layer). The
table compares every evaluated model in the shape of the BlockPruner paper's Table 1."""
from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic, monitor
from .errors import UserError
from .evaluate import table
from .evaluate.table import PPL_TITLES, TASK_TITLES, ZERO_SHOT, TableRow, shots_note, task_metric
from .plan import Plan, expand


@dataclass
class Entry:
    """One folder given to the report: a run (plan, maybe its evaluation) or an evaluation alone."""

    label: str
    path: Path
    plan: Plan | None = None
    evaluation: dict[str, Any] | None = None
    healing: dict[str, Any] | None = None  # a `blockprune heal` folder's heal.json
    figures: dict[str, str] = field(default_factory=dict)
    sources: frozenset[Path] = frozenset()  # the plan / eval / heal files it was read from



def save_png(fig, path: Path) -> None:
    """Render to memory, then write atomically like every other file blockprune writes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic.write_bytes(path, buf.getvalue())

def _read_eval(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}); re-run `blockprune eval`") from e


def load_entry(path: str | os.PathLike) -> Entry:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; give run folders (plan.json) or eval folders (eval.json)")
    plan = Plan.load(path) if (path / "plan.json").exists() else None
    ev = next((p for p in (path / "eval.json", path / "eval" / "eval.json") if p.exists()), None)
    healing = _read_eval(path / "heal.json") if (path / "heal.json").exists() else None
    if plan is None and ev is None and healing is None:
        raise UserError(f"{path} holds neither plan.json, eval.json nor heal.json")
    sources = frozenset(p.resolve() for p in (path / "plan.json", ev, path / "heal.json") if p and p.exists())
    return Entry(path.resolve().name, path, plan, _read_eval(ev) if ev else None, healing, sources=sources)


def distinct(entries: list[Entry]) -> list[Entry]:
    """Each subject once: a run folder already brings its eval/, so `report RUN RUN/eval` (or a folder given
    twice) lists it once. An entry is dropped when another brings every file it does (the earlier of equals)."""
    return [e for i, e in enumerate(entries)
            if not any(e.sources < o.sources or (e.sources == o.sources and j < i) for j, o in enumerate(entries))]


def _unique_labels(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", e.label) or "run"
        seen[base] = seen.get(base, 0) + 1
        e.label = base if seen[base] == 1 else f"{base}-{seen[base]}"


# -- figures ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def score_metric(plan: Plan) -> str:
    """What the step scores measure: calibration perplexity unless the method recorded another metric."""
    return next((s["metric"] for s in plan.steps if s.get("metric")), "ppl")


#: Importance colours are clipped at this ratio of a candidate's score to its step's best: near-ties, the
#: choices a search actually makes, span the scale; a candidate far worse than the best is simply "worse".
CLIP = {"ppl": 1.25}
CLIP_OTHER = 4.0  # other metrics (bi, rm, js) spread wider between candidates
GREY_REMOVED, GREY_NONE = "#7f7f7f", "#eeeeee"


@dataclass
class StepCells:
    """One step of the importance heatmap, as (2, layers) arrays: `rel` is ln(score / the step's best
    complete score), clipped (NaN where no complete finite score); the other masks say why a cell has none."""

    rel: Any
    removed_before: Any  # removed at an earlier step
    early: Any  # a candidate that left a race early: its score is from fewer windows, never comparable
    chosen: list[tuple[int, int]]


def _cell(block: str) -> tuple[int, int]:
    kind, _, layer = block.partition(".")
    return (0 if kind == "attn" else 1, int(layer))


def approximate(step: dict) -> set[str]:
    """A step's candidates without a final score: they left a race early, or (two-precision racing) were
    scored in the fast precision only, so their score is not comparable with the decided ones'."""
    units = set(step.get("partial") or {})
    if step.get("precision"):
        units |= set(step["scores"]) - set(step["precision"]["decided_in_full"])
    return units


def importance_cells(plan: Plan, layers: int) -> list[StepCells]:
    import numpy as np

    clip = math.log(CLIP.get(score_metric(plan), CLIP_OTHER))
    gone: set[str] = set()
    out = []
    for step in plan.steps:
        partial = approximate(step)
        full = {u: v for u, v in step["scores"].items()
                if u not in partial and v is not None and v > 0 and math.isfinite(v)}
        best = min(full.values()) if full else None
        rel, before, early = (np.full((2, layers), np.nan), np.zeros((2, layers), bool), np.zeros((2, layers), bool))
        for unit, v in full.items():
            for b in expand(unit):
                rel[_cell(b)] = min(math.log(v / best), clip)
        for unit in partial:
            for b in expand(unit):
                early[_cell(b)] = True
        for b in gone:
            before[_cell(b)] = True
        out.append(StepCells(rel, before, early, [_cell(b) for b in expand(step["removed"])]))
        gone.update(expand(step["removed"]))
    return out


def importance_grid(plan: Plan, layers: int):
    """Per step, a (2, layers) array of ln(score / the step's best complete score), clipped (NaN where the
    unit was no candidate or left a race early), and the (row, layer) cells of the unit removed then."""
    cells = importance_cells(plan, layers)
    return [c.rel for c in cells], [c.chosen for c in cells]


def scorer_note(plan: Plan) -> str:
    """How the candidates were scored, in words (for figure titles and the report)."""
    metric = score_metric(plan)
    if plan.method in ONE_PASS:
        how = f"{plan.options.get('scorer', 'incremental')} scorer" if metric == "ppl" else metric
        return f"scored once on the dense model ({how}), removed in that order"
    if metric != "ppl":
        return f"{metric} of each candidate on the model as pruned so far"
    scorer = plan.options.get("scorer", "incremental")
    if scorer == "racing" or (scorer == "fast" and plan.options.get("fast_dtype", "none") == "none"):
        return (f"racing scorer (z = {plan.options.get('racing_z', 2.5):g}): a candidate that clearly trails the "
                f"leader leaves early")
    if scorer == "fast":
        return (f"two-precision racing (z = {plan.options.get('racing_z', 2.5):g}): candidates race in "
                f"{plan.options['fast_dtype']}, the near-ties are decided in {plan.options.get('dtype', 'fp32')} "
                f"on every window")
    return f"{scorer} scorer: every candidate on every window"


ONE_PASS = ("blockpruner-oneshot", "shortgpt", "relative-magnitude")


def plot_importance(plan: Plan, layers: int, path: Path) -> None:
    import numpy as np
    from matplotlib.colors import ListedColormap, PowerNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    plt = _pyplot()
    cells = importance_cells(plan, layers)
    metric = score_metric(plan)
    top = CLIP.get(metric, CLIP_OTHER)
    n = max(1, len(cells))
    fig, axes = plt.subplots(n, 1, figsize=(max(6, 0.28 * layers + 2), 0.75 * n + 1.9), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("viridis_r")
    # near-ties take most of the colour range: a power norm spreads the first few percent
    norm = PowerNorm(0.5, vmin=0.0, vmax=math.log(top))
    im = None
    for i, ax in enumerate(axes[:, 0]):
        if i < len(cells):
            c = cells[i]
            grey = np.where(c.removed_before, 1.0, 0.0)
            ax.imshow(grey, aspect="auto", cmap=ListedColormap([GREY_NONE, GREY_REMOVED]), vmin=0, vmax=1)
            im = ax.imshow(np.ma.masked_invalid(c.rel), aspect="auto", cmap=cmap, norm=norm)
            for r, l in zip(*np.nonzero(c.early)):
                ax.add_patch(Rectangle((l - 0.5, r - 0.5), 1, 1, facecolor="white", edgecolor="#555555",
                                       hatch="////", linewidth=0))
            for r, l in c.chosen:
                ax.text(l, r, "x", ha="center", va="center", color="red", fontsize=8, fontweight="bold")
        ax.set_yticks([0, 1], ["attn", "mlp"], fontsize=7)
        ax.set_ylabel(f"step {i + 1}", rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xticks(range(layers) if i == n - 1 else [])
        ax.tick_params(axis="x", labelsize=6)
    axes[-1, 0].set_xlabel("layer")
    what = "calibration ppl with each candidate removed" if metric == "ppl" else f"{metric} score of each candidate"
    fig.suptitle(f"{plan.method}: {what}\n{scorer_note(plan)}", fontsize=9)
    legend = [Line2D([], [], marker="x", color="red", linestyle="", markeredgewidth=2, label="removed at this step"),
              Patch(facecolor=GREY_REMOVED, label="already removed"),
              Patch(facecolor=GREY_NONE, edgecolor="#cccccc", label="not a candidate")]
    if any(c.early.any() for c in cells):
        legend.append(Patch(facecolor="white", edgecolor="#555555", hatch="////",
                            label="left the race early (clearly worse; no full score)"))
    fig.legend(handles=legend, loc="outside lower center", ncol=len(legend), fontsize=7, frameon=False)
    if im is not None:
        pcts = [p for p in (0, 1, 2, 5, 10, 25, 50, 100, 200, 300) if p <= 100 * (top - 1) + 1e-9]
        bar = fig.colorbar(im, ax=axes[:, 0].tolist(), shrink=0.8, ticks=[math.log(1 + p / 100) for p in pcts])
        bar.ax.set_yticklabels([f"+{p}%" if p < pcts[-1] else f">= +{p}%" for p in pcts], fontsize=7)
        bar.set_label(f"{metric} above the step's best candidate\n(log ratio, clipped at +{100 * (top - 1):.0f}%)",
                      fontsize=7)
    save_png(fig, path)
    plt.close(fig)


def removal_path(plan: Plan) -> tuple[list[float], list[float]]:
    ratios = [0.0] + [s["ratio"] for s in plan.steps]
    ppls = [plan.dense.get("ppl", math.nan)] + [s["ppl"] for s in plan.steps]
    return ratios, ppls


def plot_paths(entries: list[Entry], path: Path) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    validated = False
    for e in entries:
        if e.plan is None:
            continue
        ratios, ppls = removal_path(e.plan)
        line, = ax.plot(ratios, ppls, marker="o", markersize=3, label=f"{e.label} ({e.plan.method}): calibration")
        for x, y, s in zip(ratios[1:], ppls[1:], e.plan.steps):  # which unit each point removed
            ax.annotate(s["removed"], (x, y), xytext=(0, 4), textcoords="offset points", fontsize=5.5,
                        rotation=90, ha="center", va="bottom", color=line.get_color())
        vals = monitor.path(e.plan)
        if vals is not None:
            validated = True
            xs = [x for x, v in zip(ratios, vals) if v is not None]
            ax.plot(xs, [v for v in vals if v is not None], marker="s", markersize=3, linestyle="--",
                    color=line.get_color(), label=f"{e.label}: validation ({e.plan.validation.get('source')})")
    ax.set_yscale("log")
    ax.margins(y=0.12)  # room for the unit names above the highest points
    # plain numbers on the log axis (not 1.08x10^1), as many per decade as the range leaves room for
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    if decades < 0.5:  # a short path (a few blocks) spans less than any list of per-decade steps
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    else:
        subs = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0) if decades < 1.5 else \
            (1.0, 2.0, 5.0) if decades < 4 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("pruning ratio (parameters removed / dense)")
    ax.set_ylabel("perplexity (log scale)")
    title = "calibration" + (" and validation" if validated else "") + " perplexity along the removal path"
    ax.set_title(title + "\n(each point is labelled with the unit removed there)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, path)
    plt.close(fig)


def plot_architecture(plan: Plan, layers: int, path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    removed = plan.removed_blocks
    kept = np.array([[f"{k}.{i}" not in removed for i in range(layers)] for k in ("attn", "mlp")], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * layers + 2), 1.6))
    ax.imshow(kept, aspect="auto", cmap=plt.get_cmap("RdYlGn"), vmin=0, vmax=1)
    ax.set_yticks([0, 1], ["attn", "mlp"])
    ax.set_xticks(range(layers))
    ax.tick_params(axis="x", labelsize=6)
    ax.set_xlabel("layer")
    ax.set_title(f"pruned architecture: green = kept, red = removed ({len(removed)} of {2 * layers} blocks)",
                 fontsize=9)
    save_png(fig, path)
    plt.close(fig)


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> bool:
    """Zero-shot accuracy per task, one bar per model (the table's metric for each task), and the five-task
    average where a model has it. False, and nothing drawn, when no row has a zero-shot score."""
    tasks = [t for t in ZERO_SHOT if any(r["tasks"].get(t) is not None for r in rows)]
    tasks += sorted({t for r in rows for t, v in r["tasks"].items() if v is not None} - set(ZERO_SHOT))
    if not tasks:
        return False
    columns = tasks + (["average"] if any(r["average"] is not None for r in rows) else [])
    plt = _pyplot()
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(columns) * max(1, len(rows) / 3) + 2), 4))
    for i, r in enumerate(rows):
        values = [r["average"] if c == "average" else r["tasks"].get(c) for c in columns]
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(columns))]
        ax.bar(xs, [100 * v if v is not None else 0.0 for v in values], width, label=f"{r['label']} ({r['method']})")
    ax.set_xticks(range(len(columns)), [TASK_TITLES.get(c, "Avg." if c == "average" else c) for c in columns],
                  fontsize=8)
    ax.set_ylabel("zero-shot accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("zero-shot accuracy per task (acc_norm where the task has it, acc for WinoGrande)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, path)
    plt.close(fig)
    return True


def describe_width(plan: Plan) -> str:
    """A width plan's one line, as its method words it (prune's summary says the same)."""
    from .methods import METHODS

    method = METHODS.get(plan.method)
    return (method.describe(plan) if method else None) or f"{plan.width['ratio']:.1%} of parameters in heads and channels"


# -- table -----------------------------------------------------------------------------------------
def table_row(e: Entry) -> dict[str, Any] | None:
    """One row of the Table-1-shaped comparison, from an entry's eval.json (None without one)."""
    ev = e.evaluation
    if ev is None:
        return None
    ratio = (ev.get("cost") or {}).get("ratio")
    if ratio is None and e.plan is not None:
        ratio = e.plan.outcome.ratio
    subject = ev["subject"]
    if ratio is None and subject.get("params") and subject.get("reference_params"):  # evaluated without cost figures
        ratio = 1 - subject["params"] / subject["reference_params"]
    if ratio is None and ev["subject"]["method"] == "dense":
        ratio = 0.0
    zs = ev.get("zero_shot", {})
    metric = {t: (ev.get("average") or {}).get("metrics", {}).get(t) or task_metric(zs[t]) for t in zs}
    method = ev["subject"]["method"]
    healing = ev["subject"].get("healing")
    if healing:
        method += f" + LoRA ({healing['steps']} steps)"
    return {"label": e.label, "method": method, "ratio": ratio,
            "wikitext2": (ev.get("perplexity", {}).get("wikitext2") or {}).get("ppl"),
            "ptb": (ev.get("perplexity", {}).get("ptb") or {}).get("ppl"),
            "texts": {t: r.get("ppl") for t, r in ev.get("perplexity", {}).items() if t not in PPL_TITLES},
            "tasks": {t: zs[t].get(metric[t]) for t in zs}, "metrics": metric,
            "num_fewshot": (ev.get("settings") or {}).get("num_fewshot") or 0,
            "average": (ev.get("average") or {}).get("value"),
            "subset": {"windows": (ev.get("perplexity", {}).get("wikitext2") or {}).get("windows"),
                       "docs": {t: zs[t].get("docs") for t in zs}}}


def add_recovery(rows: list[dict[str, Any]]) -> bool:
    """Give every row `recovery`, its average as a fraction of the dense row's (the first dense row given);
    False when no dense row has an average to compare with."""
    dense = next((r["average"] for r in rows if r["method"] == "dense" and r["average"]), None)
    for r in rows:
        r["recovery"] = r["average"] / dense if dense and r["average"] is not None else None
    return dense is not None


def markdown_table(rows: list[dict[str, Any]], recovery: bool = False) -> str:
    """The report's Table 1: model, method and ratio, then the scores (`evaluate.table`), then % of dense."""
    ratio = lambda r: f"{100 * r['ratio']:.1f}%" if r["ratio"] is not None else "–"  # noqa: E731
    ppl = ["wikitext2"] + (["ptb"] if any(r.get("ptb") is not None for r in rows) else [])  # PTB when measured
    ppl += sorted({t for r in rows for t in r.get("texts", {})})  # perplexity of local texts (ppl:FILE)
    cells = [TableRow([r["label"], r["method"], ratio(r)],
                      {"wikitext2": r.get("wikitext2"), "ptb": r.get("ptb"), **r.get("texts", {})},
                      r["tasks"], r.get("metrics", {}), r["average"],
                      [table.number(r.get("recovery"), True)] if recovery else []) for r in rows]
    other = sorted({t for r in rows for t in r["tasks"]} - set(ZERO_SHOT))  # custom and other lm-eval tasks
    return table.markdown_table(["Model", "Method", "Ratio"], cells, perplexity=ppl, other=other,
                                trail=["% of dense"] if recovery else [])


# -- the report ------------------------------------------------------------------------------------
def build(dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write out/report.md, out/report.json and out/figures/*.png; returns the Markdown path."""
    entries = distinct([load_entry(d) for d in dirs])
    _unique_labels(entries)
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
        md += _cost_table(entries)
    md += _healing_section(entries)
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
            md += [f"- candidates ranked by: {scorer_note(p)}" + _race_note(p)]
        md += _monitor_lines(p) + [""]
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


def _race_note(plan: Plan) -> str:
    early = [len(approximate(s)) for s in plan.steps]
    if not any(early):
        return ""
    how = ("left the race early or were scored in the fast precision only" if any(s.get("precision") for s in plan.steps)
           else "left the race early")
    return (f"; {sum(early)} of {sum(len(s['scores']) for s in plan.steps)} candidate scores {how} "
            f"(hatched in the importance figure: not final, so not comparable)")


def _monitor_lines(plan: Plan) -> list[str]:
    v = monitor.check(plan)
    if v is None:
        return []
    ppl = lambda x: "inf" if x is None else f"{x:.3f}"  # noqa: E731
    ratio = "–" if v["log_ratio"] is None else f"{v['log_ratio']:.2f}"
    lines = [f"- validation perplexity ({plan.validation.get('source')}, {plan.validation.get('windows')} windows): "
             f"{ppl(v['dense_ppl'])} dense → {ppl(v['pruned_ppl'])}; its log rise over calibration's {ratio} "
             f"(the monitor warns above {v['threshold']:g})"]
    if v["warning"]:
        lines.append(f"- **warning:** {v['warning']}")
    return lines


def _layers_from_scores(plan: Plan) -> int:
    idx = [int(b.split(".")[1]) for s in plan.steps for u in s["scores"] for b in expand(u)]
    return max(idx) + 1 if idx else 1


def _cost_table(entries: list[Entry]) -> list[str]:
    rows = [(e.label, e.evaluation["cost"]) for e in entries if e.evaluation and e.evaluation.get("cost")]
    if not rows:
        return []
    lines = ["### Cost", "", "| Model | Params | Ratio | Latency (128 tokens) | Load (CPUs) | KV cache / token | "
             "Peak memory |", "|---|---|---|---|---|---|---|"]
    caveats = []
    for label, c in rows:
        ratio = f"{100 * c['ratio']:.1f}%" if c.get("ratio") is not None else "–"
        lat = c["latency"]
        load = f"{lat['load_average'][0]:.1f} ({lat['cpus']})" if lat.get("load_average") else "–"  # older eval.json
        mark = " ⚠" if lat.get("caveat") else ""
        if lat.get("caveat"):
            caveats.append(f"{label}: {lat['caveat']}")
        lines.append(f"| {label} | {c['params']:,} | {ratio} | {lat['mean_s']:.3f} ± {lat.get('stdev_s', 0.0):.3f} s"
                     f"{mark} | {load} | {c['kv_cache_bytes_per_token']:,} B | "
                     f"{c['peak_memory']['bytes'] / 2**20:.0f} MiB ({c['peak_memory']['what']}) |")
    if caveats:
        lines += ["", "⚠ Latency " + "; ".join(caveats) + ". Re-run `blockprune eval` on a quiet machine to compare "
                  "latencies."]
    return lines + [""]


def _healing_section(entries: list[Entry]) -> list[str]:
    healed = [e for e in entries if e.healing]
    if not healed:
        return []
    lines = ["## Healing", "", "| Model | LoRA steps | Tokens (with loss) | Time | Validation loss before → after |",
             "|---|---|---|---|---|"]
    for e in healed:
        h = e.healing
        lines.append(f"| {e.label} | {h['steps']} | {h['tokens']:,} ({h['label_tokens']:,}, "
                     f"{h['data'].get('loss_on', '?')}) | {h['seconds']:.0f} s | "
                     f"{h['val_loss_before']:.3f} → {h['val_loss_after']:.3f} |")
    return lines + [""]
