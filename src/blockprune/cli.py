"""The `blockprune` command: a thin layer over the Python API. Errors are one line and exit status 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, like every other input error
        self.exit(2, f"blockprune: error: {message} (see `{self.prog} --help`)\n")


def _formatter(prog):
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def _add_model(p) -> None:
    p.add_argument("--model", default="smollm2-135m",
                   help="Hugging Face hub id, local checkpoint folder, or built-in alias 'smollm2-135m'")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="precision of the forward passes")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--data-dir", default=None,
                   help="folder with offline dataset copies (calibration/alpaca_5000.json, perplexity/...); "
                        "default: $BLOCKPRUNE_DATA, else the Hugging Face hub")


def build_parser() -> argparse.ArgumentParser:
    from .methods import METHODS

    parser = _Parser(prog="blockprune", description="Training-free structured pruning of causal LMs.",
                     formatter_class=_formatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("prune", help="search what to remove and write a plan and a pruned checkpoint",
                       formatter_class=_formatter,
                       description="Run a pruning method; write OUT/plan.json (the removal plan, state after "
                                   "every step) and OUT/model (the pruned checkpoint).")
    _add_model(p)
    p.add_argument("--method", default="blockpruner", choices=sorted(METHODS),
                   help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    p.add_argument("--block-type", default="mix", choices=["mha", "mlp", "mix"],
                   help="which blocks are candidates: attention only, MLP only, or both")
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument("--num-blocks", type=int, help="remove exactly K units (blocks, or layers for layer methods)")
    stop.add_argument("--ratio", type=float,
                      help="remove units while removed parameters / all parameters (embeddings included) stays <= r")
    p.add_argument("--calibration", default="alpaca",
                   help="calibration text: alpaca, wikitext2, ptb, or a local .txt/.json/.jsonl file")
    p.add_argument("--nsamples", type=int, default=256, help="rows sampled from the calibration set (seeded)")
    p.add_argument("--seqlen", type=int, default=2048, help="tokens per calibration window")
    p.add_argument("--seed", type=int, default=42, help="seed of the row sample")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (memory vs speed)")
    p.add_argument("--out", default="runs/blockprune", help="run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    p.add_argument("--no-export", action="store_true", help="write the plan only, no checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("export", help="write the pruned checkpoint of a run folder", formatter_class=_formatter)
    e.add_argument("run_dir", help="a run folder written by `blockprune prune`")
    e.add_argument("--format", default="auto", choices=["auto", "vanilla", "remote-code"],
                   help="auto: vanilla when only whole layers are removed, else remote-code")
    e.add_argument("--out", default=None, help="checkpoint folder (default RUN_DIR/model-FORMAT)")
    return parser


def _prune(args) -> dict:
    from .api import PruneOptions, prune

    opts = PruneOptions(method=args.method, block_type=args.block_type, num_blocks=args.num_blocks, ratio=args.ratio,
                        calibration=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                        dtype=args.dtype, batch_size=args.batch_size)
    res = prune(args.model, args.out, options=opts, data_dir=args.data_dir, device=args.device, resume=args.resume,
                export=not args.no_export, progress=not args.quiet)
    s = res.summary
    c = s["calibration"]
    print(f"blockprune: {res.plan.method} removed {len(s['removed'])} units ({s['ratio']:.1%} of parameters): "
          f"{', '.join(s['removed'])}")
    print(f"  calibration perplexity {s['dense_ppl']:.4f} -> {s['pruned_ppl']:.4f} "
          f"({c['source']}, {c['windows']} windows x {c['seqlen']} tokens)")
    print(f"  plan:       {s['plan']}")
    if s["checkpoint"]:
        print(f"  checkpoint: {s['checkpoint']}  (AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True))")
    return s


def _export(args) -> None:
    from . import models
    from .export import export
    from .plan import Plan

    plan = Plan.load(args.run_dir)
    net, tok = models.load(plan.model["source"], plan.options.get("dtype", "fp32"))
    if models.fingerprint(net) != plan.model["sha256"]:
        raise UserError(f"the model {plan.model['source']} is not the one this plan was made on (weights differ)")
    out = args.out or str(Path(args.run_dir) / f"model-{args.format}")
    meta = {"method": plan.method, "base_model": plan.model["source"], "base_model_sha256": plan.model["sha256"]}
    export(net, plan.removed_blocks, out, fmt=args.format, meta=meta, tokenizer=tok)
    print(f"blockprune: wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        {"prune": _prune, "export": _export}[args.command](args)
    except UserError as e:
        print(f"blockprune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blockprune: interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
