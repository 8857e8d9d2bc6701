"""blockprune export: write the pruned checkpoint of a run folder in a chosen format."""
from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "write the pruned checkpoint of a run folder"
DESCRIPTION = "Write RUN_DIR's plan applied to its base model as a checkpoint with the removed weights absent."


def add_arguments(p) -> None:
    from ..export import choices

    p.add_argument("run_dir", help="a run folder written by `blockprune prune`")
    p.add_argument("--format", default="auto", choices=choices(),
                   help="auto: vanilla when only whole layers are removed (width plans: when every layer "
                        "keeps the same widths), else remote-code; nemotron-nas: Llama-layout models in the "
                        "DeciLM layout vLLM serves natively")
    p.add_argument("--out", default=None, help="checkpoint folder (default RUN_DIR/model-FORMAT)")


def run(args) -> None:
    from ..plan import Plan

    plan = Plan.load(args.run_dir)
    net, tok = plan.load_base()
    out = args.out or str(Path(args.run_dir) / f"model-{args.format}")
    plan.export(net, out, fmt=args.format, tokenizer=tok)
    print(f"blockprune: wrote {out}")
