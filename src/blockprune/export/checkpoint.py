"""Writing and reading pruned checkpoints (see the package docstring for the formats)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import AbstractSet, Any

import torch
from torch import nn

from .. import atomic
from ..arch import adapter_for
from ..errors import UserError

FORMATS = ("auto", "vanilla", "remote-code")
TEMPLATES = Path(__file__).parent / "templates"


def whole_layers(removed: AbstractSet[str]) -> list[int] | None:
    """The removed layer indices if `removed` is exactly a set of whole layers, else None."""
    layers = {int(n.split(".")[1]) for n in removed}
    if all({f"attn.{i}", f"mlp.{i}"} <= set(removed) for i in layers) and len(removed) == 2 * len(layers):
        return sorted(layers)
    return None


def _provenance(meta: dict[str, Any], removed: AbstractSet[str], fmt: str) -> dict[str, Any]:
    return {**meta, "format": fmt, "removed": sorted(removed, key=_block_order)}


def _block_order(name: str) -> tuple[int, int]:
    kind, _, layer = name.partition(".")
    return int(layer), 0 if kind == "attn" else 1


def _save_extras(tokenizer, model: nn.Module, out: Path) -> None:
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out)


def _state_dict_without(model: nn.Module, drop: set[str]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k not in drop}


def _export_vanilla(model: nn.Module, removed: AbstractSet[str], out: Path, meta: dict[str, Any], tokenizer) -> None:
    layers = whole_layers(removed)
    if layers is None:
        raise UserError("the vanilla format only expresses whole removed layers; this plan removes single "
                        "blocks: use --format remote-code (or auto)")
    adapter = adapter_for(model)
    keep = [i for i in range(len(adapter.layers())) if i not in set(layers)]
    pruned = copy.deepcopy(model)
    pad = adapter_for(pruned)
    pad.layers().__init__([pad.layers()[i] for i in keep])  # a fresh ModuleList in the kept order
    for new, old in enumerate(keep):
        pad.renumber_layer(new)
    cfg = pruned.config
    cfg.num_hidden_layers = len(keep)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    cfg.blockprune = _provenance(meta, removed, "vanilla")
    pruned.save_pretrained(out)
    _save_extras(tokenizer, model, out)


def _export_remote_code(model: nn.Module, removed: AbstractSet[str], out: Path, meta: dict[str, Any],
                        tokenizer) -> None:
    adapter = adapter_for(model)
    skip: dict[str, str] = {}
    drop: set[str] = set()
    no_attention = []
    for name in sorted(removed, key=_block_order):
        kind, _, layer = name.partition(".")
        layer_i = int(layer)
        prefix = adapter._layer_prefix(layer_i)
        drop |= {n for n, _ in adapter.branch_parameters(layer_i, kind)}
        for sub in adapter.branch_modules[kind]:
            if sub == adapter.branch_core[kind]:
                skip[f"{prefix}.{sub}"] = adapter.removed_core_output(kind)
            else:
                skip[f"{prefix}.{sub}"] = "identity"
        if kind == "attn":
            no_attention.append(layer_i)
    base_type = model.config.model_type
    model_type = f"blockprune_{base_type}"
    cfg = copy.deepcopy(model.config)
    if no_attention:
        adapter.removed_attention_config(cfg, no_attention)
    cfg.blockprune = {**_provenance(meta, removed, "remote-code"), "skip": skip, "base_model_type": base_type}
    cfg.architectures = ["BlockPrunedForCausalLM"]
    cfg.auto_map = {"AutoConfig": "configuration_blockprune.BlockPrunedConfig",
                    "AutoModelForCausalLM": "modeling_blockprune.BlockPrunedForCausalLM"}
    d = cfg.to_dict()
    d["model_type"] = model_type
    model.save_pretrained(out, state_dict=_state_dict_without(model, drop))
    atomic.write_json(out / "config.json", d)
    fill = {"config_module": type(model.config).__module__, "config_class": type(model.config).__name__,
            "model_module": type(model).__module__, "model_class": type(model).__name__, "model_type": model_type}
    for name in ("configuration_blockprune.py", "modeling_blockprune.py"):
        text = (TEMPLATES / name).read_text()
        for k, v in fill.items():
            text = text.replace("{" + k + "}", v)
        (out / name).write_text(text)
    _save_extras(tokenizer, model, out)


def export(model: nn.Module, removed: AbstractSet[str], out: str | Path, *, fmt: str = "auto",
           meta: dict[str, Any] | None = None, tokenizer=None) -> Path:
    """Write the pruned checkpoint of `model` without the `removed` blocks to `out` (atomically)."""
    from . import choose_format

    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    removed = frozenset(removed)
    if fmt == "auto":
        fmt = choose_format(removed) if removed else "vanilla"
    out = Path(out)
    writer = {"vanilla": _export_vanilla, "remote-code": _export_remote_code}[fmt]
    with atomic.staged_dir(out) as tmp:
        if fmt == "vanilla" and not removed:
            model.save_pretrained(tmp)
            _save_extras(tokenizer, model, tmp)
        else:
            writer(model, removed, tmp, meta or {}, tokenizer)
    return out


def load(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Load a pruned (or any) checkpoint, with its own modeling code where it ships one."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise UserError(f"{path} is not a checkpoint folder (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=True)
    return model.to(device).eval()
