"""The report's PNG figures: block importance per search step, the removal path of every run on one plot,
each run's pruned architecture, and zero-shot accuracy per task. matplotlib is imported only to draw."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import atomic, monitor
from ..evaluate.table import TASK_TITLES, ZERO_SHOT
from ..plan import Plan, expand
from .loading import LoadedFolder
from .text import approximate, score_metric, scorer_note


def save_png(fig, path: Path) -> None:
    """Render to memory, then write atomically like every other file blockprune writes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic.write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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


def plot_paths(entries: list[LoadedFolder], path: Path) -> None:
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
