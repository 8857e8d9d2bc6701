"""Checkpoints in and out of a healing run: the pruned checkpoint it starts from (a run folder's plan is
exported first when it has no `model`), the adapter checkpoint it resumes from (`OUT/adapter`, written whole
then renamed into place, with the optimizer, scheduler and RNG state), and the merged, healed checkpoint
(`OUT/model`, in the input's format) with its record `OUT/heal.json`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import atomic, machine, models
from ..errors import UserError
from .data import TrainingData, collate
from .options import HealOptions

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


# ------------------------------------------------------------------------------------------- inputs

def export_run(run: Path, out: Path) -> Path:
    """A run folder's plan applied to its base model, written as a checkpoint (the format `auto` picks)."""
    from ..plan import Plan

    plan = Plan.load(run)
    net, tok = plan.load_base()
    return plan.export(net, out, tokenizer=tok)


def input_checkpoint(target: str | Path, scratch: Path) -> Path:
    """The checkpoint folder to heal: the target itself, a run folder's exported `model`, or (when the
    run was not exported) its plan exported into `scratch`."""
    path = Path(target).expanduser()
    if (path / "plan.json").exists():
        if (path / "model" / "config.json").exists():
            return path / "model"
        return export_run(path, scratch / "model")
    if (path / "config.json").exists():
        return path
    resolved = models.resolve(str(target))
    if isinstance(resolved, Path):
        return resolved
    raise UserError(f"{target} is neither a run folder (plan.json) nor a checkpoint folder (config.json)")


def load_input(source: Path, dtype: torch.dtype, device) -> tuple[nn.Module, Any]:
    """The checkpoint to heal and the tokenizer its training data is read with."""
    from transformers import AutoTokenizer

    from ..export import load as load_checkpoint

    model = load_checkpoint(source, dtype, device)
    try:
        return model, AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{source} has no tokenizer to read the training data with") from e


def default_out(target: str | Path) -> Path:
    path = Path(target).expanduser()
    if (path / "plan.json").exists():
        return path / "healed"
    return path.with_name(path.name + "-healed")


# -------------------------------------------------------------------------------------- the adapter

def save_adapter(peft_model, optimizer, scheduler, state: dict[str, Any], where: Path) -> None:
    with atomic.staged_dir(where) as tmp:
        peft_model.save_pretrained(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
        atomic.write_json(tmp / "state.json", state)


def load_adapter(peft_model, optimizer, scheduler, where: Path) -> None:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(peft_model, load_file(where / "adapter_model.safetensors"))
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"{where}: the saved adapter does not fit this model ({result.unexpected_keys[:3]})")
    saved = torch.load(where / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])


# ------------------------------------------------------------------------------------------- output

def save_healed(model: nn.Module, source: Path, out: Path, healing: dict[str, Any]) -> Path:
    """Write the merged `model` as `source`'s format: its config (with the healing recorded), modeling code,
    tokenizer and generation config copied, the weights replaced."""
    config = json.loads((source / "config.json").read_text())
    remote = "auto_map" in config
    with atomic.staged_dir(out) as tmp:
        # remote-code checkpoints keep in-memory weight names: their model type has no conversion mapping
        model.save_pretrained(tmp, save_original_format=not remote)
        for f in source.iterdir():
            if f.is_file() and not any(f.match(p) for p in WEIGHT_FILES):
                shutil.copy2(f, tmp / f.name)
        meta = config.get("blockprune")
        config["blockprune"] = {**(meta if isinstance(meta, dict) else {}), "healing": healing}
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        for key in ("dtype", "torch_dtype"):
            if key in config:
                config[key] = dtype
        atomic.write_json(tmp / "config.json", config)
    return out


def finish(peft_model, source: Path, out: Path, state: dict[str, Any], data: TrainingData, opts: HealOptions,
           pad_id: int, device, lora_params: int, target: str) -> dict[str, Any]:
    """Merge the adapter, write the healed checkpoint, and check that it reproduces the adapter-wrapped model."""
    import peft

    from ..export import load as load_checkpoint

    probe = collate([(data.val or data.train)[0]], pad_id)
    peft_model.eval()
    with torch.no_grad():
        want = peft_model(input_ids=probe["input_ids"].to(device)).logits
        merged = peft_model.merge_and_unload()
        merge_diff = float((merged(input_ids=probe["input_ids"].to(device)).logits - want).abs().max())
    last = state["history"][-min(len(state["history"]), 10):]
    healing = {"options": opts.recorded(), "data": data.describe(), "steps": state["step"],
               "tokens": state["tokens"], "label_tokens": state["label_tokens"], "seconds": round(state["seconds"], 1),
               "lora_params": lora_params, "final_train_loss": sum(h["loss"] for h in last) / max(len(last), 1),
               "val_loss_before": state["val"][0]["loss"], "val_loss_after": state["val"][-1]["loss"],
               "merge_max_abs_logit_diff": merge_diff, "input": target, "peft": peft.__version__,
               "machine": machine.describe()}  # `seconds` was measured on it
    checkpoint = save_healed(merged, source, out / "model", healing)
    with torch.no_grad():
        healed = load_checkpoint(checkpoint, next(merged.parameters()).dtype, device)
        saved_diff = float((healed(input_ids=probe["input_ids"].to(device)).logits - want).abs().max())
    scale = float(want.abs().max())
    if saved_diff > 1e-4 * max(1.0, scale) and next(merged.parameters()).dtype == torch.float32:
        raise UserError(f"the healed checkpoint in {checkpoint} does not reproduce the fine-tuned model (logits "
                        f"differ by {saved_diff:.3g}); this is a bug, please report it")
    record = {**healing, "saved_max_abs_logit_diff": saved_diff, "checkpoint": str(checkpoint),
              "history": state["history"], "val": state["val"]}
    atomic.write_json(out / "heal.json", record)
    return record
