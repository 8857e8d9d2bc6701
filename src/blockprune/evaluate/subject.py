"""What `blockprune eval` evaluates: a dense model, a pruned checkpoint, a run folder's plan applied in
memory to its base model (nothing saved), or a healing folder's merged checkpoint, as one ready-to-run
Hugging Face model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any

import torch
from torch import nn

from .. import models
from ..data import recorded_path
from ..errors import UserError
from ..export import mask_modules
from ..plan import Plan


def mask_in_memory(model: nn.Module, removed: AbstractSet[str]) -> nn.Module:
    """Replace the removed blocks' modules in place, exactly as the remote-code export does on load.

    The result is an ordinary model object (generate, KV cache, lm-eval all work) whose logits equal
    `BlockView(base).logits(ids, removed)`; the removed weights are freed."""
    mask_modules(model, removed)
    return model


@dataclass
class Subject:
    model: nn.Module
    tokenizer: Any
    kind: str  # "dense" | "checkpoint" | "run"
    source: str  # what the user named
    method: str  # "dense" or the pruning method
    removed: list[str] = field(default_factory=list)  # units in removal order (run folders, checkpoints)
    reference_params: int | None = None  # the dense model's parameter count, for the ratio
    base_model: str | None = None
    healing: dict[str, Any] | None = None  # a healed checkpoint: the LoRA budget it was trained with

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": recorded_path(self.source), "method": self.method, "removed": self.removed,
                "base_model": self.base_model and recorded_path(self.base_model), "family": getattr(self.model.config, "model_type", None),
                "healing": self.healing, "params": models.count_params(self.model),
                "reference_params": self.reference_params}


def dense_params(spec: str) -> int:
    """A model's parameter count from its config alone (built on the meta device: no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(models.resolve(spec), trust_remote_code=True)
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    return models.count_params(net)


def load_subject(target: str, dtype: str = "fp32", device: str = "cpu") -> Subject:
    path = Path(target).expanduser()
    if (path / "heal.json").exists() and (path / "model").is_dir():  # `blockprune heal`'s output folder
        subject = load_subject(str(path / "model"), dtype, device)
        subject.source = target
        return subject
    if (path / "plan.json").exists():
        plan = Plan.load(path)
        net, tok = plan.load_base(device, dtype)  # the fingerprint is checked when dtype is the plan's
        reference = models.count_params(net)
        return Subject(plan.apply(net), tok, "run", str(path), plan.method, plan.removed, reference,
                       plan.model["source"])
    net, tok = models.load(target, dtype, device)
    meta = getattr(net.config, "blockprune", None)
    if isinstance(meta, dict):  # a checkpoint blockprune exported: its provenance names the dense base
        base = meta.get("base_model")
        reference = None
        if base:
            try:
                reference = dense_params(base)
            except (OSError, UserError, ValueError):
                reference = None  # the base is not reachable here: report params without a ratio
        healing = meta.get("healing")
        if isinstance(healing, dict):
            healing = {k: healing.get(k) for k in ("steps", "tokens", "seconds", "val_loss_before", "val_loss_after")}
        return Subject(net, tok, "checkpoint", target, meta.get("method", "pruned"), meta.get("removed", []),
                       reference, base, healing if isinstance(healing, dict) else None)
    return Subject(net, tok, "dense", target, "dense", [], models.count_params(net), target)
