"""blockprune report: a Markdown page, a JSON file and PNG figures from run and eval folders."""
from __future__ import annotations

NAME = "report"
HELP = "turn run/eval folders into a Markdown report with figures"
DESCRIPTION = ("A Markdown page, report.json and PNG figures: block importance per search step, calibration "
               "perplexity along the removal path, the pruned architecture, and a BlockPruner-Table-1 comparison.")


def add_arguments(p) -> None:
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_EVAL_DIR",
                   help="run folders (plan.json, and eval/eval.json if evaluated) and eval folders (eval.json)")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and figures")


def run(args) -> None:
    from ..atomic import check_writable
    from ..report import build

    check_writable(args.out)  # a file or an unwritable place fails now, not after the figures
    print(f"blockprune: wrote {build(args.dirs, args.out)}")
