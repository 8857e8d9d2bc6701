"""The LoRA training loop: token-level loss, validation loss, the learning-rate schedule and the optimizer
steps, each averaging the loss over every labelled token of its `accumulation` micro-batches."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import save_adapter
from .data import IGNORE, Example, Stream, collate
from .options import HealOptions


def token_nll(model: nn.Module, batch: dict[str, torch.Tensor], device) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over the labelled tokens of a batch, and how many there are."""
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    logits = out.logits[:, :-1].float()
    target = batch["labels"][:, 1:].to(device)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                          reduction="sum")
    return nll, int((target != IGNORE).sum())


@torch.no_grad()
def validation_loss(model: nn.Module, examples: list[Example], pad_id: int, device, batch_size: int) -> float | None:
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        nll, n = token_nll(model, collate(examples[i:i + batch_size], pad_id), device)
        total, count = total + float(nll), count + n
    model.train(was_training)
    return total / max(count, 1)


def make_scheduler(opts: HealOptions, optimizer, total: int):
    from transformers import get_scheduler

    name = "constant_with_warmup" if opts.schedule == "constant" else opts.schedule
    return get_scheduler(name, optimizer, num_warmup_steps=opts.warmup_steps, num_training_steps=total)


def trainable_params(peft_model) -> int:
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def train(peft_model, optimizer, scheduler, stream: Stream, val: list[Example], state: dict[str, Any], total: int,
          opts: HealOptions, pad_id: int, device, eval_every: int, adapter_dir: Path, progress: bool,
          on_step: Callable[[int, nn.Module], None] | None) -> dict[str, Any]:
    """Optimizer steps from state["step"] to `total`; each averages the NLL over every labelled token of
    its `accumulation` micro-batches. Checkpoints the adapter every `save_every` steps and at the end."""
    from tqdm.auto import tqdm

    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    peft_model.train()
    bar = tqdm(total=total, initial=state["step"], desc="heal", unit="step", file=sys.stderr, disable=not progress)
    started, tokens_at_start = time.perf_counter(), state["tokens"]
    while state["step"] < total:
        step = state["step"]
        micro = [collate(stream.micro_batch(m), pad_id) for m in range(step * opts.accumulation,
                                                                       (step + 1) * opts.accumulation)]
        n_labels = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        loss_sum = 0.0
        for batch in micro:
            nll, _ = token_nll(peft_model, batch, device)
            (nll / max(n_labels, 1)).backward()
            loss_sum += float(nll.detach())
        if opts.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, opts.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        state["step"] = step + 1
        state["tokens"] += sum(int(b["attention_mask"].sum()) for b in micro)
        state["label_tokens"] += n_labels
        state["history"].append({"step": step + 1, "loss": loss_sum / max(n_labels, 1), "lr": lr})
        rate = (state["tokens"] - tokens_at_start) / max(elapsed, 1e-9)
        bar.set_postfix(loss=f"{state['history'][-1]['loss']:.4f}", tok_s=f"{rate:.0f}", refresh=False)
        bar.update(1)
        if state["step"] % eval_every == 0 or state["step"] == total:
            state["val"].append({"step": state["step"], "loss": validation_loss(peft_model, val, pad_id, device,
                                                                                opts.batch_size)})
            bar.write(f"heal: step {state['step']}: validation loss {state['val'][-1]['loss']}", file=sys.stderr)
        if state["step"] % opts.save_every == 0 or state["step"] == total:
            state["seconds"] += time.perf_counter() - started
            started, tokens_at_start = time.perf_counter(), state["tokens"]
            save_adapter(peft_model, optimizer, scheduler, state, adapter_dir)
        if on_step is not None:
            on_step(state["step"], peft_model)
    bar.close()
    return state
