"""blockprune compare: several methods at a matched ratio, evaluated alike, as one Table-1-shaped table."""
from __future__ import annotations

from . import add_model_arguments, add_search_arguments, add_subset_arguments, add_task_arguments, declared_values

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
    add_search_arguments(p, "compare")
    add_task_arguments(p, "wikitext2,piqa,winogrande,hellaswag,arc_easy,arc_challenge")
    p.add_argument("--eval-seqlen", type=int, default=2048, help="tokens per test-perplexity window")
    add_subset_arguments(p, quick_by_default=True)
    p.add_argument("--out", default="runs/compare", help="comparison folder (resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> None:
    from ..api import PruneOptions
    from ..atomic import check_writable
    from ..compare import compare
    from ..evaluate import prepare
    from ..evaluate.resumable import make_evaluator
    from . import read_evaluation

    windows, limit = read_evaluation(args, quick_by_default=True)
    check_writable(args.out)
    tasks = prepare(args.tasks.split(","), include_path=args.include_path, data_dir=args.data_dir)  # before any search

    opts = PruneOptions(block_type=args.block_type, calibration=args.calibration, nsamples=args.nsamples,
                        seqlen=args.seqlen, seed=args.seed, dtype=args.dtype, scorer=args.scorer,
                        batch_size=args.batch_size, ratio=args.ratio, validation=args.validation,
                        validation_nsamples=args.validation_nsamples, **declared_values(args, "compare"))
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
