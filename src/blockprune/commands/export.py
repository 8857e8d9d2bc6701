"""blockprune export: write the pruned checkpoint of a run folder in a chosen format."""
from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "write the pruned checkpoint of a run folder"
DESCRIPTION = "Write RUN_DIR's plan applied to its base model as a checkpoint with the removed weights absent."


def add_arguments(p) -> None:
    from ..export import FORMATS

    p.add_argument("run_dir", help="a run folder written by `blockprune prune`")
    p.add_argument("--format", default="auto", choices=list(FORMATS),
                   help="auto: vanilla when only whole layers are removed (width plans: when every layer "
                        "keeps the same widths), else remote-code; nemotron-nas: Llama-layout models in the "
                        "DeciLM layout vLLM serves natively")
    p.add_argument("--out", default=None, help="checkpoint folder (default RUN_DIR/model-FORMAT)")


def run(args) -> None:
    from .. import models
    from ..errors import UserError
    from ..export import export
    from ..plan import Plan

    plan = Plan.load(args.run_dir)
    net, tok = models.load(plan.model["source"], plan.options.get("dtype", "fp32"))
    if models.fingerprint(net) != plan.model["sha256"]:
        raise UserError(f"the model {plan.model['source']} is not the one this plan was made on (weights differ)")
    out = args.out or str(Path(args.run_dir) / f"model-{args.format}")
    meta = {"method": plan.method, "base_model": plan.model["source"], "base_model_sha256": plan.model["sha256"]}
    if plan.width is not None:  # a width method's plan: the narrower model
        from ..methods.llm_bip import export_plan
        export_plan(net, plan, out, meta, tok, fmt=args.format)
    else:
        export(net, plan.removed_blocks, out, fmt=args.format, meta=meta, tokenizer=tok)
    print(f"blockprune: wrote {out}")
