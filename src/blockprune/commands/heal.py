"""blockprune heal: recovery fine-tuning of a pruned model with LoRA, merged into a checkpoint of the same format."""
from __future__ import annotations

from . import add_data_dir, device_arg

NAME = "heal"
HELP = "recover a pruned model with a short LoRA fine-tune and save the merged checkpoint"
DESCRIPTION = ("LoRA-fine-tune RUN_OR_CHECKPOINT (a run folder of `blockprune prune`, or any checkpoint it exported) "
               "on Alpaca or a local instruction/text file, then merge the adapter and write OUT/model in the input's "
               "format (OUT/adapter: the resumable adapter checkpoint; OUT/heal.json: the record). Defaults are "
               "BlockPruner's: rank 32, alpha 10, lr 2e-4, batch 1, accumulation 4, linear schedule, all linear "
               "layers but embeddings and head.")


def add_arguments(p) -> None:
    from ..heal import SCHEDULES, HealOptions

    d = HealOptions()
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT", help="run folder (plan.json) or pruned checkpoint folder")
    p.add_argument("--out", default=None, help="output folder (default: RUN/healed, or CHECKPOINT-healed)")
    p.add_argument("--data", default=d.data,
                   help="training data: alpaca, or a local .json/.jsonl (instruction/input/output rows: loss on the "
                        "response only) or .txt / text rows / wikitext2 / ptb (loss on every token)")
    add_data_dir(p)
    p.add_argument("--rows", type=int, default=None,
                   help="instruction rows to sample (default: all; the paper used 8000)")
    p.add_argument("--val-size", type=int, default=d.val_size,
                   help="examples held out for validation loss (at most a fifth of the data)")
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--rank", type=int, default=d.rank, help="LoRA rank r of each adapter's A and B matrices")
    lora.add_argument("--alpha", type=float, default=d.alpha, help="LoRA alpha: the update is scaled by alpha / rank")
    lora.add_argument("--dropout", type=float, default=d.dropout, help="dropout on the adapters' input, in [0, 1)")
    lora.add_argument("--target-modules", default=d.target_modules,
                      help="all-linear (every linear layer but the head), or a comma list such as q_proj,v_proj")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate (no weight decay)")
    opt.add_argument("--schedule", default=d.schedule, choices=SCHEDULES,
                     help="learning-rate schedule after warm-up: linear or cosine decay to 0, or constant")
    opt.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                     help="optimizer steps of linear warm-up from 0 to --lr")
    opt.add_argument("--epochs", type=float, default=d.epochs,
                     help="passes over the training examples (fractions allowed; --steps overrides)")
    opt.add_argument("--steps", type=int, default=None,
                     help="optimizer steps (default: as many as --epochs takes; overrides --epochs)")
    opt.add_argument("--batch-size", type=int, default=d.batch_size,
                     help="examples per micro-batch (one optimizer step: --batch-size x --accumulation)")
    opt.add_argument("--accumulation", type=int, default=d.accumulation, help="micro-batches per optimizer step")
    opt.add_argument("--max-length", type=int, default=d.max_length, help="tokens per example (longer ones are cut)")
    opt.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (0: none)")
    opt.add_argument("--seed", type=int, default=d.seed,
                     help="seed of the row sample, the validation split, the example order and LoRA's init")
    p.add_argument("--dtype", default=d.dtype, choices=["fp32", "bf16", "fp16"],
                   help="precision of the model while training")
    p.add_argument("--device", default="cpu", type=device_arg, help="torch device, e.g. cpu, cuda")
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint the adapter every N steps")
    p.add_argument("--eval-every", type=int, default=None,
                   help="validation loss every N steps (default: every --save-every steps)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted healing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> None:
    import math

    from ..heal import HealOptions, heal

    opts = HealOptions(data=args.data, rows=args.rows, val_size=args.val_size, rank=args.rank, alpha=args.alpha,
                       dropout=args.dropout, target_modules=args.target_modules, lr=args.lr, schedule=args.schedule,
                       warmup_steps=args.warmup_steps, epochs=args.epochs, steps=args.steps,
                       batch_size=args.batch_size, accumulation=args.accumulation, max_length=args.max_length,
                       max_grad_norm=args.max_grad_norm or None, seed=args.seed, dtype=args.dtype,
                       save_every=args.save_every, eval_every=args.eval_every)
    result = heal(args.target, args.out, options=opts, data_dir=args.data_dir, device=args.device,
                  resume=args.resume, progress=not args.quiet)
    r = result.record
    ppl = lambda loss: f"{loss:.4f} (ppl {math.exp(loss):.2f})" if loss is not None else "n/a"  # noqa: E731
    print(f"blockprune: healed {r['steps']} steps, {r['tokens']} tokens ({r['label_tokens']} with loss: "
          f"{r['data']['loss_on']}), {r['seconds']:.0f} s")
    print(f"  validation loss before {ppl(r['val_loss_before'])}  after {ppl(r['val_loss_after'])}")
    print(f"  wrote {result.checkpoint} (record: {result.out / 'heal.json'})")
