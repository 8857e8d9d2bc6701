"""blockprune prune: search what to remove; write the plan and the pruned checkpoint."""
from __future__ import annotations

import sys

from . import add_model_arguments, add_search_arguments, declared_values

NAME = "prune"
HELP = "search what to remove and write a plan and a pruned checkpoint"
DESCRIPTION = ("Run a pruning method; write OUT/plan.json (the removal plan, also the search state after every "
               "step) and OUT/model (the pruned checkpoint).")


def add_arguments(p, estimate: bool = False) -> None:
    """prune's options; `estimate` True: those `blockprune estimate` shares (not --resume, --no-export,
    --quiet, --force)."""
    from .. import scoring
    from ..methods import METHODS
    from ..options import PruneOptions

    default = PruneOptions()
    add_model_arguments(p)
    p.add_argument("--method", default=default.method, choices=sorted(METHODS),
                   help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    metrics = "; ".join(f"{n}: {scoring.get(n).summary}" for n in scoring.metrics()[1:])
    p.add_argument("--metric", default=default.metric, choices=scoring.metrics(),
                   help=f"what the search ranks units by: {scoring.PERPLEXITY} (calibration perplexity) or {metrics} "
                        f"({', '.join(m.name for m in METHODS.values() if m.ranks_by_metric)})")
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument("--num-blocks", type=int,
                      help="remove exactly K units (blocks, or layers for layer methods); this or --ratio is required")
    stop.add_argument("--ratio", type=float,
                      help="remove units while removed parameters / all parameters (embeddings included) stays <= r; "
                           "this or --num-blocks is required (width methods: --ratio only)")
    add_search_arguments(p, "estimate" if estimate else "prune")
    p.add_argument("--cache-every", type=int, default=default.cache_every,
                   help="keep every n-th block boundary in the cache (memory / n, more recomputation)")
    p.add_argument("--cache-device", default=default.cache_device,
                   help="where cached hidden states live: a torch device, or disk (memory-mapped files in a "
                        "temporary folder inside --out, removed at the end); default: the model's device")
    p.add_argument("--out", default="runs/blockprune", help="run folder to write")
    if estimate:
        return
    p.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    p.add_argument("--no-export", action="store_true", help="write the plan only, no checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="run even when `blockprune estimate`'s figures say the run will not fit in memory")


def options_from(args, command: str = "prune"):
    """The PruneOptions a prune (or estimate) command line gives."""
    from ..options import PruneOptions

    return PruneOptions(method=args.method, block_type=args.block_type, metric=args.metric,
                        num_blocks=args.num_blocks, ratio=args.ratio,
                        calibration=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                        dtype=args.dtype, scorer=args.scorer, batch_size=args.batch_size,
                        cache_every=args.cache_every, cache_device=args.cache_device,
                        validation=args.validation, validation_nsamples=args.validation_nsamples,
                        **declared_values(args, command))


def run(args) -> None:
    from ..api import prune
    from ..words import count

    opts = options_from(args)
    opts.check_all_used()  # every option given to this one run must take effect
    res = prune(args.model, args.out, options=opts, data_dir=args.data_dir, device=args.device, resume=args.resume,
                export=not args.no_export, progress=not args.quiet, force=args.force)
    s = res.summary
    c = s["calibration"]
    if s["width"]:
        print(f"blockprune: {res.plan.method} removed {s['ratio']:.1%} of parameters: {s['width']}")
    else:
        print(f"blockprune: {res.plan.method} removed {len(s['removed'])} units ({s['ratio']:.1%} of parameters): "
              f"{', '.join(s['removed'])}")
    print(f"  calibration perplexity {s['dense_ppl']:.4f} -> {s['pruned_ppl']:.4f} "
          f"({c['source']}, {count(c['windows'], 'window')} x {c['seqlen']} tokens)")
    v = s.get("validation")
    if v:
        src = v["source"]
        ppl = lambda x: "inf" if x is None else f"{x:.4f}"  # noqa: E731  (an infinite pass is stored as null)
        print(f"  validation perplexity {ppl(v['dense_ppl'])} -> {ppl(v['pruned_ppl'])} "
              f"({src['source']}, {count(src['windows'], 'window')} x {src['seqlen']} tokens)")
        if v["warning"]:
            print(f"blockprune: warning: {v['warning']}", file=sys.stderr)
    print(f"  plan:       {s['plan']}")
    if s["checkpoint"]:
        print(f"  checkpoint: {s['checkpoint']}  ({loader(s['checkpoint'])})")


def loader(checkpoint: str) -> str:
    """How to load the checkpoint: trust_remote_code=True only where it ships its modeling code (auto_map)."""
    import json
    from pathlib import Path

    try:
        remote = "auto_map" in json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        remote = True  # cannot tell: the form that loads either kind
    return f"AutoModelForCausalLM.from_pretrained(path{', trust_remote_code=True' if remote else ''})"
