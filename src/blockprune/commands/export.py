"""blockprune export: write the pruned checkpoint of a run folder in a chosen format."""
from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "write the pruned checkpoint of a run folder"
DESCRIPTION = "Write RUN_DIR's plan applied to its base model as a checkpoint with the removed weights absent."


def add_arguments(p) -> None:
    from ..export import FORMATS, choices
    from ..export.gguf_file import DEFAULT_OUTTYPE, OUTTYPES

    p.add_argument("run_dir", help="a run folder written by `blockprune prune`")
    p.add_argument("--format", default="auto", choices=choices(),
                   help="; ".join(["auto: vanilla where it can express the plan, else remote-code",
                                   *(f"{name}: {f.help}" for name, f in FORMATS.items() if f.help)]))
    p.add_argument("--out", default=None,
                   help="checkpoint folder (default RUN_DIR/model-FORMAT); for gguf a file "
                        "(default RUN_DIR/model-OUTTYPE.gguf)")
    p.add_argument("--outtype", default=None, choices=list(OUTTYPES),
                   help=f"gguf only: the type of the weight matrices (default {DEFAULT_OUTTYPE}; norms stay f32)")
    p.add_argument("--dense", action="store_true",
                   help="write the run's base model with nothing removed, in the same format (to compare like "
                        "with like); default name dense-... instead of model-...")


def default_out(run_dir: str, fmt: str, outtype: str | None, dense: bool) -> Path:
    from ..export.gguf_file import DEFAULT_OUTTYPE

    stem = "dense" if dense else "model"
    if fmt == "gguf":
        return Path(run_dir) / f"{stem}-{outtype or DEFAULT_OUTTYPE}.gguf"
    return Path(run_dir) / f"{stem}-{fmt}"


def run(args) -> None:
    from .. import atomic
    from ..errors import UserError
    from ..export import FORMATS
    from ..export.writer import options_refusal, out_refusal
    from ..plan import Plan

    plan = Plan.load(args.run_dir)
    out = Path(args.out) if args.out else default_out(args.run_dir, args.format, args.outtype, args.dense)
    options = {"outtype": args.outtype} if args.outtype else {}
    why = (options_refusal(args.format, options) if args.format in FORMATS else None) or out_refusal(args.format, out)
    if why is not None:
        raise UserError(why)
    if not args.dense:
        refuse_before_loading(plan, args.format, options)
    file = args.format in FORMATS and FORMATS[args.format].file
    atomic.check_writable(out.parent if file else out)
    net, tok = plan.load_base()
    if args.dense:
        from ..export import export

        meta = {"method": "dense", "base_model": plan.model["source"], "base_model_sha256": plan.model["sha256"]}
        export(net, frozenset(), out, fmt=args.format, meta=meta, tokenizer=tok, options=options)
    else:
        plan.export(net, out, fmt=args.format, tokenizer=tok, options=options)
    print(f"blockprune: wrote {out}")


def refuse_before_loading(plan, fmt: str, options: dict | None = None) -> None:
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
        why = FORMATS[fmt].refusal(Job(None, frozenset(plan.removed_blocks), {}, options=options or {}))
    except (AttributeError, TypeError):  # this format's refusal looks at the model itself
        return
    if why is not None:
        raise UserError(why)
