"""Reports: run folders (plan.json) and eval folders (eval.json) as a Markdown page, a JSON file and
PNG figures that can be read at a glance.

Figures per run: block importance at each search step (layers × attention/MLP, colour = each candidate's
calibration perplexity relative to the step's best, clipped; grey = already removed; hatched = left a
race early), calibration perplexity (and the monitor's validation perplexity) against pruning ratio along
the removal path with the unit removed at each point (all runs on one plot), and the pruned architecture
(which blocks remain in each layer). The
table compares every evaluated model in the shape of the BlockPruner paper's Table 1.

One module per job: `loading` (each folder given, read as a `LoadedFolder`), `text` (a run's search in
words), `figures` (the PNGs), `tables` (the Table-1 comparison, cost and healing tables), `page` (report.md
and report.json assembled from them)."""
from .figures import (CLIP, CLIP_OTHER, GREY_NONE, GREY_REMOVED, StepCells, importance_cells, importance_grid,
                      plot_accuracy, plot_architecture, plot_importance, plot_paths, removal_path, save_png)
from .loading import LoadedFolder, distinct, load_folder
from .page import build
from .tables import add_recovery, markdown_table, table_row
from .text import ONE_PASS, approximate, describe_width, score_metric, scorer_note

__all__ = ["CLIP", "CLIP_OTHER", "GREY_NONE", "GREY_REMOVED", "LoadedFolder", "ONE_PASS", "StepCells", "add_recovery",
           "approximate", "build", "describe_width", "distinct", "importance_cells", "importance_grid",
           "load_folder", "markdown_table", "plot_accuracy", "plot_architecture", "plot_importance", "plot_paths",
           "removal_path", "save_png", "score_metric", "scorer_note", "table_row"]
