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
    from .. import atomic
    from ..plan import Plan

    plan = Plan.load(args.run_dir)
    out = args.out or str(Path(args.run_dir) / f"model-{args.format}")
    refuse_before_loading(plan, args.format)
    atomic.check_writable(out)
    net, tok = plan.load_base()
    plan.export(net, out, fmt=args.format, tokenizer=tok)
    print(f"blockprune: wrote {out}")


def refuse_before_loading(plan, fmt: str) -> None:
    """A format that cannot express a depth plan on a plain family checkpoint says so before the weights
    load: its refusal then needs only the removed blocks. (A width plan, or a base checkpoint pruned
    before, whose earlier removals join the plan's, is judged on the loaded model, as before.)"""
    from ..errors import UserError
    from ..export import FORMATS
    from ..export.common import Job

    family = str(plan.model.get("family", ""))
    if plan.width is not None or fmt not in FORMATS or family.startswith("blockprune_") or family == "nemotron-nas":
        return
    try:
        why = FORMATS[fmt].refusal(Job(None, frozenset(plan.removed_blocks), {}))
    except (AttributeError, TypeError):  # this format's refusal looks at the model itself
        return
    if why is not None:
        raise UserError(why)
