"""Recovery fine-tuning ("healing"): LoRA on a pruned model, merged back into a checkpoint of the same format.

Defaults follow the BlockPruner appendix (LoRA rank 32, alpha 10, learning rate 2e-4, batch 1, gradient
accumulation 4, linear schedule, every linear layer but the embeddings and the head, 8,000 Alpaca rows);
what the appendix leaves unsaid comes from LLM-Pruner's recovery recipe, which it follows (2 epochs,
LoRA dropout 0.05, 256-token examples, gradient clipping at 1.0 as the HF Trainer does).

`heal` reads its options (`options`), its training examples (`data`), the checkpoint to heal
(`checkpoints`), trains (`training`) and writes the merged checkpoint and its record (`checkpoints`).
`OUT/adapter` holds the latest adapter checkpoint, so `resume=True` continues exactly where it stopped;
`OUT/model` is the merged, healed checkpoint; `OUT/heal.json` the record of the run."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import atomic, models
from ..errors import UserError
from ..words import differences
from .checkpoints import default_out, export_run, finish, input_checkpoint, load_adapter, load_input
from .data import IGNORE, Example, Stream, TrainingData, collate, instruction_example, load_examples
from .options import PAPER_ROWS, SCHEDULES, HealOptions
from .training import make_scheduler, token_nll, train, trainable_params, validation_loss

__all__ = ["heal", "HealOptions", "HealResult", "SCHEDULES", "PAPER_ROWS", "IGNORE", "Example", "TrainingData",
           "collate", "instruction_example", "load_examples", "token_nll", "export_run"]


@dataclass
class HealResult:
    """Where a healing run wrote (`out`), its merged checkpoint and its heal.json record."""

    out: Path
    checkpoint: Path
    record: dict[str, Any] = field(default_factory=dict)


def heal(target: str | Path, out: str | Path | None = None, *, options: HealOptions | None = None,
         data_dir: str | Path | None = None, device: str = "cpu", resume: bool = False, progress: bool = True,
         on_step: Callable[[int, nn.Module], None] | None = None, **option_overrides) -> HealResult:
    """LoRA-fine-tune the pruned model in `target` (a run folder or any exported checkpoint), merge the
    adapter and write `out/model` in the input's checkpoint format. Options are a `HealOptions` or its
    fields as keywords. `on_step(step, peft_model)` is called after every optimizer step (tests use it)."""
    from peft import LoraConfig, get_peft_model

    opts = options or HealOptions(**option_overrides)
    opts.validate()
    out = Path(out) if out is not None else default_out(target)
    adapter_dir, state_path = out / "adapter", out / "adapter" / "state.json"
    if resume and not state_path.exists():
        raise UserError(f"nothing to resume in {out} (no adapter/state.json); drop --resume to start a new run")
    if not resume and (state_path.exists() or (out / "model").exists()):
        raise UserError(f"{out} already holds a healing run; pass --resume to continue it or choose another --out")

    atomic.check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".heal-input.", dir=out))
    try:
        source = input_checkpoint(target, scratch)
        model, tokenizer = load_input(source, models.DTYPES[opts.dtype], device)
        data = load_examples(opts, tokenizer, data_dir)
        pad_id = next(i for i in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0)
                      if i is not None)
        loss_on = "response tokens only (prompt tokens masked)" if data.mode == "response" else "all tokens"
        _say(progress, f"heal: {target} on {data.source}: {len(data.train)} train / {len(data.val)} validation "
                       f"examples, loss on {loss_on}")
        if data.source == "alpaca" and opts.rows is None and data.available < PAPER_ROWS:
            _say(progress, f"heal: Alpaca has {data.available} rows here (the paper used {PAPER_ROWS}); using all")

        torch.manual_seed(opts.seed)  # LoRA's A matrices are initialized at random
        try:
            peft_model = get_peft_model(model, LoraConfig(r=opts.rank, lora_alpha=opts.alpha,
                                                          lora_dropout=opts.dropout, target_modules=opts.targets(),
                                                          bias="none", task_type="CAUSAL_LM"))
        except ValueError as e:
            raise UserError(f"--target-modules {opts.target_modules!r}: {e}") from e
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        steps_per_epoch = len(data.train) / (opts.batch_size * opts.accumulation)
        total = opts.steps or max(1, math.ceil(opts.epochs * steps_per_epoch))
        optimizer = torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=0.0)
        scheduler = make_scheduler(opts, optimizer, total)
        # a local input is recorded relative to the output folder: the record names the same checkpoint
        # from any working directory and on any machine the two folders are copied to together
        identity = {"input": os.path.relpath(Path(target).expanduser().resolve(), Path(out).resolve())
                    if Path(target).expanduser().exists() else str(target), "options": opts.recorded(), "data": data.describe(),
                    "steps": total}

        if resume:
            state = json.loads(state_path.read_text())
            if state["identity"] != identity:
                raise UserError(f"{out} was healed with {differences(state['identity'], identity)}; it cannot be "
                                f"resumed with these inputs (start a new --out)")
            load_adapter(peft_model, optimizer, scheduler, adapter_dir)
            _say(progress, f"heal: resuming at step {state['step']} of {total}")
        else:
            state = {"identity": identity, "step": 0, "tokens": 0, "label_tokens": 0, "seconds": 0.0,
                     "history": [], "val": []}
            state["val"].append({"step": 0, "loss": validation_loss(peft_model, data.val, pad_id, device,
                                                                    opts.batch_size)})

        stream = Stream(data.train, opts.batch_size, opts.seed)
        eval_every = opts.eval_every or opts.save_every
        state = train(peft_model, optimizer, scheduler, stream, data.val, state, total, opts, pad_id, device,
                      eval_every, adapter_dir, progress, on_step)

        record = finish(peft_model, source, out, state, data, opts, pad_id, device, trainable_params(peft_model),
                        identity["input"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return HealResult(out, out / "model", record)


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr)
