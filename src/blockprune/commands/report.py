"""blockprune report: a Markdown page, a JSON file and PNG figures from run and eval folders."""
from __future__ import annotations

NAME = "report"
HELP = "turn run/eval folders into a Markdown report with figures"
DESCRIPTION = "Summarize one or more run folders (plan.json) and eval folders (eval.json)."


def add_arguments(p) -> None:
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_EVAL_DIR")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and figures")


def run(args) -> None:
    from ..report import build

    build(args.dirs, args.out)
