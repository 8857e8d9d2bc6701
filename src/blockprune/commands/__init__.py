"""CLI subcommands, one module each. A module defines NAME, HELP, DESCRIPTION, `add_arguments(parser)`
and `run(args) -> int | None`; listing it in COMMANDS is all it takes to add a subcommand."""
from __future__ import annotations

import importlib

COMMANDS = ["prune", "estimate", "export", "eval", "report", "compare", "verify", "heal"]


def load_all():
    return [importlib.import_module(f"{__name__}.{name.replace('-', '_')}") for name in COMMANDS]


def device_arg(value: str) -> str:
    """--device checked as it is parsed, for every command that loads a model."""
    if value not in ("auto", "cpu"):  # nothing to check, and nothing to import (torch) to check it
        import argparse

        from ..errors import UserError
        from ..models import check_device

        try:
            check_device(value, named=False)  # argparse names the option itself
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    return value


def add_model_arguments(p) -> None:
    """The options every command that loads a model shares."""
    from ..models import ALIASES, DEFAULT_MODEL, DTYPES

    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"Hugging Face hub id, local checkpoint folder, or built-in alias {', '.join(map(repr, ALIASES))}")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES), help="precision of the forward passes")
    p.add_argument("--device", default="cpu", type=device_arg, help="torch device, e.g. cpu, cuda, cuda:1; auto shards the model over all GPUs (accelerate)")
    add_data_dir(p)


def add_data_dir(p) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with offline dataset copies (calibration/alpaca_5000.json, perplexity/..., eval/...); "
                        "default: $BLOCKPRUNE_DATA, else the Hugging Face hub")


def add_search_arguments(p, command: str) -> None:
    """What a search is calibrated on and which blocks it considers (prune, estimate and compare); the API's
    defaults; then the options methods declare (`declared.Option`) that `command` takes."""
    from ..declared import add_arguments
    from ..methods import METHODS
    from ..options import PruneOptions, method_options
    from ..search.greedy import BLOCK_TYPES

    default = PruneOptions()
    p.add_argument("--block-type", default=default.block_type, choices=BLOCK_TYPES,
                   help="which blocks are candidates: attention only, MLP only, or both (block methods)")
    p.add_argument("--calibration", default=default.calibration,
                   help="calibration text: alpaca, wikitext2, ptb, or a local .txt/.json/.jsonl file")
    p.add_argument("--nsamples", type=int, default=default.nsamples, help="rows sampled from the calibration set (seeded)")
    p.add_argument("--seqlen", type=int, default=default.seqlen, help="tokens per calibration window")
    p.add_argument("--seed", type=int, default=default.seed, help="seed of the row sample")
    p.add_argument("--validation", default=default.validation,
                   help="the overfitting monitor's text, scored once after each step: auto (Alpaca rows held out "
                        "from the calibration sample when --calibration is alpaca, else off), heldout (rows of "
                        "the --calibration .json/.jsonl file not sampled), any source --calibration takes, or none")
    p.add_argument("--validation-nsamples", type=int, default=default.validation_nsamples,
                   help="validation rows (seeded like --nsamples; whole-text sources: that many rows in order); "
                        "default: as many as --nsamples, at most 128, so a pass costs about one candidate's scoring")
    add_scorer_arguments(p, command)
    p.add_argument("--batch-size", type=int, default=default.batch_size,
                   help="windows per forward pass (memory vs speed)")
    declared = [o for o in method_options().values() if command in o.commands]
    add_arguments(p, [o for o in declared if not o.group], command)
    for g in dict.fromkeys(o.group for o in declared if o.group):  # "width" -> "width methods (llm-bip, ...)"
        users = [m.name for m in METHODS.values() if any(o.group == g for o in m.options)]
        add_arguments(p.add_argument_group(f"{g} methods ({', '.join(users)})"),
                      [o for o in declared if o.group == g], command)


def add_scorer_arguments(p, command: str) -> None:
    """How perplexity searches score candidates (prune, estimate and compare); choices and defaults are the
    API's, and each scorer's own options are as it declares them (`ScorerEntry.options`)."""
    from .. import scoring
    from ..declared import add_arguments
    from ..options import PruneOptions, scorer_choices, scorer_options

    default = PruneOptions()
    described = "; ".join(f"{n}: {scoring.get(n).summary}" for n in scoring.perplexity_scorers())
    p.add_argument("--scorer", default=default.scorer, choices=scorer_choices(),
                   help=f"how candidates are scored: {described}; auto: fast where the device runs bf16 natively (AVX512-BF16/AMX CPUs, CUDA GPUs of compute "
                        "capability 8.0+), else incremental; perplexity searches only (--metric ppl)")
    add_arguments(p, scorer_options().values(), command)


def declared_values(args, command: str) -> dict:
    """The declared options (methods' and scorers') a `command` line gives, as PruneOptions keywords."""
    from ..declared import values_from
    from ..options import declared_options

    return values_from(args, declared_options().values(), command)


def add_task_arguments(p, default_tasks: str) -> None:
    """What to evaluate on, shared by eval and compare."""
    p.add_argument("--tasks", default=default_tasks,
                   help="comma-separated: wikitext2, ptb, ppl:FILE (perplexity of a local .txt/.json/.jsonl text), "
                        "and lm-eval task names (built-in, or defined in --include-path)")
    p.add_argument("--include-path", action="append", default=None, metavar="DIR",
                   help="folder of lm-eval task YAMLs (lm-eval's --include_path convention), usable by name in "
                        "--tasks; repeatable")
    p.add_argument("--num-fewshot", type=int, default=0,
                   help="examples in each prompt (lm-eval's --num_fewshot; 0 as in the papers)")


def add_subset_arguments(p, quick_by_default: bool) -> None:
    """How much of each test set to evaluate on, shared by eval and compare with one meaning each: only the
    default differs (eval: the full test sets; compare: the quick subset). `read_evaluation` checks them."""
    from ..evaluate import QUICK_DOCS, QUICK_WINDOWS

    quick, full = " (the default)" if quick_by_default else "", "" if quick_by_default else " (the default)"
    p.add_argument("--quick", action="store_true", default=None,
                   help=f"the standard quick subset: the first {QUICK_WINDOWS} perplexity windows and the first "
                        f"{QUICK_DOCS} documents of each task{quick}; not with --full, --limit or --max-windows")
    p.add_argument("--full", action="store_true", default=None,
                   help=f"the full test sets: every perplexity window and every document of each task{full}; "
                        f"not with --quick, --limit or --max-windows")
    p.add_argument("--max-windows", type=int, default=None, metavar="N",
                   help="use only the first N perplexity windows, 0 for every window (default: "
                        + (f"the quick subset's {QUICK_WINDOWS})" if quick_by_default else "every window)"))
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N documents of each task, 0 for every document (default: "
                        + (f"the quick subset's {QUICK_DOCS})" if quick_by_default else "every document)"))


def read_evaluation(args, quick_by_default: bool) -> tuple[int | None, int | None]:
    """The options `add_task_arguments` and `add_subset_arguments` declare, checked before any work (an option
    that would do nothing is refused, as prune refuses one), and the perplexity windows and documents per
    task they ask for (None: all)."""
    from ..errors import UserError
    from ..evaluate import QUICK_DOCS, QUICK_WINDOWS, check_num_fewshot

    check_num_fewshot(args.num_fewshot)
    if args.quick and args.full:
        raise UserError("--quick and --full ask for different subsets; give one of them")
    given = {f"--{f.replace('_', '-')}": getattr(args, f) for f in ("max_windows", "limit")
             if getattr(args, f) is not None}
    for flag, n in given.items():
        if n < 0:
            raise UserError(f"{flag} must be at least 0 (got {n}; 0: all of them)")
    if given and (args.quick or args.full):
        flag = "--quick" if args.quick else "--full"
        sets = f"the first {QUICK_WINDOWS} windows and {QUICK_DOCS} documents" if args.quick else "every window and document"
        named = " and ".join(f"{f} {n}" for f, n in given.items())
        raise UserError(f"{flag} sets {sets} itself, so {named} would do nothing; drop {flag} or drop {named}")
    quick = args.quick or (quick_by_default and not args.full)
    windows, docs = (QUICK_WINDOWS, QUICK_DOCS) if quick else (None, None)
    return (windows if args.max_windows is None else args.max_windows or None,
            docs if args.limit is None else args.limit or None)
