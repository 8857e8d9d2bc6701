"""blockprune compare: several methods at a matched ratio, evaluated alike, as one Table-1-shaped table."""
from __future__ import annotations

from . import add_model_arguments, add_search_arguments, add_task_arguments

NAME = "compare"
HELP = "run several methods at the same target ratio and tabulate their evaluations"
DESCRIPTION = ("Run each method at the largest removal not above --ratio (each into OUT/<method>, resumable: "
               "finished searches and evaluations are kept), evaluate each and the dense model on WikiText-2 "
               "perplexity and zero-shot tasks, and write OUT/comparison.md and OUT/comparison.json.")


def add_arguments(p) -> None:
    from .. import scoring
    from ..compare import DEFAULT_METHODS

    add_model_arguments(p)
    p.add_argument("--ratio", type=float, required=True, help="target share of parameters to remove")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated methods; method:metric runs a search ranked by "
                        f"{', '.join(scoring.metrics()[1:])}; a width method's method:global or method:uniform "
                        f"picks its --allocation (e.g. llm-bip,llm-bip:global)")
    add_search_arguments(p)
    add_task_arguments(p, "wikitext2,piqa,winogrande,hellaswag,arc_easy,arc_challenge")
    p.add_argument("--eval-seqlen", type=int, default=2048, help="tokens per test-perplexity window")
    p.add_argument("--max-windows", type=int, default=None,
                   help="first N test-perplexity windows (default: the standard quick subset's; 0: all of them)")
    p.add_argument("--limit", type=int, default=None,
                   help="first M documents of each zero-shot task (default: the standard quick subset's)")
    p.add_argument("--full", action="store_true", help="evaluate on the full test sets instead of the quick subset")
    p.add_argument("--out", default="runs/compare", help="comparison folder (resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> None:
    from ..api import PruneOptions
    from ..atomic import check_writable
    from ..compare import compare
    from ..errors import UserError
    from ..evaluate import QUICK_DOCS, QUICK_WINDOWS, prepare
    from ..evaluate.resumable import make_evaluator

    if args.num_fewshot < 0:
        raise UserError(f"--num-fewshot must be at least 0 (got {args.num_fewshot})")
    for name, value in (("--max-windows", args.max_windows), ("--limit", args.limit)):
        if value is not None and value < 0:
            raise UserError(f"{name} must be at least 0 (got {value})")
    check_writable(args.out)
    tasks = prepare(args.tasks.split(","), include_path=args.include_path, data_dir=args.data_dir)  # before any search

    opts = PruneOptions(block_type=args.block_type, calibration=args.calibration, nsamples=args.nsamples,
                        seqlen=args.seqlen, seed=args.seed, dtype=args.dtype, scorer=args.scorer,
                        fast_dtype=args.fast_dtype, racing_z=args.racing_z,
                        batch_size=args.batch_size, ratio=args.ratio, validation=args.validation,
                        validation_nsamples=args.validation_nsamples, generations=args.generations)
    windows = None if args.full or args.max_windows == 0 else (args.max_windows or QUICK_WINDOWS)
    limit = None if args.full else (args.limit or QUICK_DOCS)
    evaluator, settings = make_evaluator(seqlen=args.eval_seqlen, max_windows=windows, limit=limit,
                                         data_dir=args.data_dir, include_path=args.include_path,
                                         num_fewshot=args.num_fewshot, dtype=args.dtype, device=args.device,
                                         progress=not args.quiet)
    result = compare(args.model, args.out, ratio=args.ratio, methods=args.methods, options=opts,
                     tasks=tasks.tasks, evaluator=evaluator,
                     eval_settings=settings, data_dir=args.data_dir, device=args.device, progress=not args.quiet)
    from ..compare import markdown
    print(markdown(result))
    print(f"blockprune: wrote {args.out}/comparison.md and comparison.json")
