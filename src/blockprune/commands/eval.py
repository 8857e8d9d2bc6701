"""blockprune eval: perplexity, zero-shot accuracy (lm-evaluation-harness) and cost of a model."""
from __future__ import annotations

NAME = "eval"
HELP = "evaluate a dense model, a pruned checkpoint or a run folder as the papers report it"
DESCRIPTION = ("Perplexity on WikiText-2/PTB or any local text (non-overlapping windows), zero-shot (or few-shot) "
               "acc/acc_norm through lm-evaluation-harness (piqa, winogrande, hellaswag, arc_easy, arc_challenge, any "
               "lm-eval task, or your own task YAMLs with --include-path), "
               "parameters, generation latency, KV-cache size and peak memory. A run folder is evaluated as its "
               "plan applied in memory to the base model; nothing is saved but eval.json.")


def add_arguments(p) -> None:
    from ..evaluate import DEFAULT_TASKS
    from . import add_model_arguments, add_subset_arguments, add_task_arguments

    p.add_argument("target", nargs="?", default=None,
                   help="a run folder (plan.json) or a checkpoint folder; default: the --model")
    add_model_arguments(p)
    add_task_arguments(p, ",".join(DEFAULT_TASKS))
    add_subset_arguments(p, quick_by_default=False)
    p.add_argument("--seqlen", type=int, default=2048, help="perplexity window length in tokens")
    p.add_argument("--batch-size", type=int, default=16, help="lm-eval batch size")
    p.add_argument("--no-shared-prompts", action="store_true",
                   help="score every choice with lm-eval's stock HFLM (prompt re-run per choice) instead of "
                        "running each prompt once for all its choices (same log-likelihoods within rounding)")
    p.add_argument("--no-cost", action="store_true", help="skip params/latency/KV-cache/peak-memory figures")
    p.add_argument("--latency-repeats", type=int, default=5, help="timed generation runs (after one warm-up)")
    p.add_argument("--out", default=None, help="folder for eval.json (default: TARGET/eval, or runs/eval-MODEL)")


def run(args) -> None:
    from pathlib import Path

    from ..atomic import check_writable
    from ..errors import UserError
    from ..evaluate import evaluate, load_subject, prepare
    from ..words import count
    from . import read_evaluation

    max_windows, limit = read_evaluation(args, quick_by_default=False)
    for flag in ("seqlen", "batch_size", "latency_repeats"):
        v = getattr(args, flag)
        if v < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1 (got {v})")
    target = args.target or args.model
    out = Path(args.out) if args.out else (Path(target) / "eval" if args.target else
                                          Path("runs") / f"eval-{Path(target).name}")
    check_writable(out)
    # every task resolved and its documents loaded before the model: a bad --tasks fails in seconds
    tasks = prepare(args.tasks.split(","), include_path=args.include_path, data_dir=args.data_dir)
    subject = load_subject(target, args.dtype, args.device)
    record = evaluate(subject, tasks, out=out, seqlen=args.seqlen, max_windows=max_windows, limit=limit,
                      data_dir=args.data_dir, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
                      with_cost=not args.no_cost, latency_repeats=args.latency_repeats,
                      shared_prompts=not args.no_shared_prompts,
                      settings={"quick": bool(args.quick), "dtype": args.dtype, "device": args.device})
    for t, r in record["perplexity"].items():
        print(f"{t}: ppl {r['ppl']:.4f} ({count(r['windows'], 'window')} of {r['seqlen']})")
    for t, r in record["zero_shot"].items():
        shown = "  ".join(f"{m} {v:.4f}" for m, v in r.items() if isinstance(v, float) and not m.endswith("_stderr"))
        shots = f", {r['num_fewshot']}-shot" if r.get("num_fewshot") else ""
        print(f"{t}: {shown}  ({count(r['docs'], 'doc')}{shots})")
    if record["average"]:
        print(f"average {record['average']['value']:.4f}  ({record['average']['rule']})")
    if record["cost"]:
        c = record["cost"]
        ratio = f"  ratio {c['ratio']:.4f}" if c["ratio"] is not None else ""
        print(f"params {c['params']:,}{ratio}  latency {c['latency']['mean_s']:.3f}s/{c['latency']['new_tokens']} tokens  "
              f"KV cache {c['kv_cache_bytes_per_token']:,} B/token  peak memory {c['peak_memory']['bytes'] / 2**20:.0f} MiB")
        if c["latency"].get("caveat"):
            print(f"  latency {c['latency']['mean_s']:.3f} ± {c['latency']['stdev_s']:.3f} s {c['latency']['caveat']}")
    print(f"blockprune: wrote {out / 'eval.json'}")
