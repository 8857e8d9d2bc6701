"""blockprune export: write the pruned checkpoint of a run folder in a chosen format."""
from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "write the pruned checkpoint of a run folder"
DESCRIPTION = "Write RUN_DIR's plan applied to its base model as a checkpoint with the removed weights absent."


def add_arguments(p) -> None:
    from ..export import FORMATS, choices

    p.add_argument("run_dir", help="a run folder written by `blockprune prune`")
    p.add_argument("--format", default="auto", choices=choices(),
                   help="; ".join(["auto: vanilla where it can express the plan, else remote-code",
                                   *(f"{name}: {f.help}" for name, f in FORMATS.items() if f.help)]))
    p.add_argument("--out", default=None, help="checkpoint folder (default RUN_DIR/model-FORMAT)")


def run(args) -> None:
    from ..plan import Plan

    plan = Plan.load(args.run_dir)
    net, tok = plan.load_base()
    out = args.out or str(Path(args.run_dir) / f"model-{args.format}")
    plan.export(net, out, fmt=args.format, tokenizer=tok)
    print(f"blockprune: wrote {out}")
