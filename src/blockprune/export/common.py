"""What every format shares: the job record, provenance, removed-module maps, template rendering, and
saving weights, tokenizer and generation config."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Mapping

from torch import nn

from .. import atomic
from ..arch import Adapter, adapter_for
from ..arch.base import family_type
from ..errors import UserError
from ..units import block_order, layer_blocks, parse_unit
from ..view import BlockView
from .templates.blockprune_removed import KEEPS_LENGTH, remove_modules

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Job:
    """One checkpoint to write: what a format's `refusal` judges and its `write` writes.

    `width` says where the model's widths are: None for a depth export (the config's widths); "narrowed"
    for a width plan's narrower copy (widths in its modules, `removed` empty); "pruned" for a loaded
    width-pruned checkpoint (`config.blockprune["widths"]`) whose `removed` blocks are pruned now.
    `options` are the format's own settings (gguf's `outtype`); `export` refuses any the format does not
    take (`Format.options`)."""

    model: nn.Module
    removed: frozenset[str]  # every removed block, a depth-pruned checkpoint's earlier removals included
    meta: dict[str, Any]
    tokenizer: Any = None
    width: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def whole_layers(removed: AbstractSet[str]) -> list[int] | None:
    """The removed layer indices if `removed` is exactly a set of whole layers, else None."""
    layers = {parse_unit(n)[1] for n in removed}
    if all(set(layer_blocks(i)) <= set(removed) for i in layers) and len(removed) == 2 * len(layers):
        return sorted(layers)
    return None


def width_pruned(model: nn.Module) -> bool:
    """Whether `model` is a width-pruned remote-code checkpoint (per-layer widths in `config.blockprune`)."""
    info = getattr(model.config, "blockprune", None)
    return isinstance(info, dict) and "widths" in info


def width_refusal(why: str) -> str:
    """Why a format cannot write a width-pruned model (`why`: this format's reason)."""
    return (f"this model is width-pruned with per-layer widths (config.blockprune['widths']), which only the "
            f"remote-code format can express (it resizes each layer on load); {why}. Export with --format "
            f"remote-code (or auto; fmt='remote-code' in Python)")


def hf_base(cls: type) -> type:
    """The transformers class a (possibly remote-code) model or config class derives from.

    A checkpoint loaded with its shipped modeling file (blockprune's own included) has classes from a
    dynamic module (`transformers_modules.<folder>...`) that exists only in that process: exported code
    must import the transformers classes underneath."""
    for c in cls.__mro__:
        if c.__module__.startswith("transformers.models."):
            return c
    raise UserError(f"{cls.__name__} does not derive from a transformers model class; cannot export it")


# -- provenance: what config.json records ------------------------------------------------------------
def earlier_pruning(model: nn.Module) -> dict[str, Any]:
    """The `config.blockprune` record of a depth-pruned checkpoint loaded with its shipped modeling file
    (remote-code or nemotron-nas), whose blocks it lists under "removed" are absent; {} for any other
    model. A vanilla checkpoint is the family's own class with layers renumbered: nothing to carry over."""
    info = getattr(model.config, "blockprune", None)
    if not isinstance(info, dict) or not info.get("removed") or type(model).__module__.startswith("transformers."):
        return {}
    return info


def provenance(model: nn.Module, removed: AbstractSet[str], meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A depth export's record: what was removed, by which method, from which base model.

    A checkpoint pruned again (`removed` then includes its earlier removals) keeps the dense original's
    base model, parameter count and family; the record it was loaded with goes under "pruned_from"."""
    view = BlockView(model)
    before = earlier_pruning(model)
    info = {**meta, "format": fmt, "removed": sorted(removed, key=block_order),
            "base_params": before.get("base_params", view.total_params),
            "params": view.total_params - view.removed_params(removed), "base_model_type": family_type(model.config)}
    parent = {"checkpoint": meta["base_model"]} if meta.get("base_model") else {}
    if before:
        info["pruned_from"] = {**parent, **{k: v for k, v in before.items() if k != "skip"}}
        info.update({k: before[k] for k in ("base_model", "base_model_sha256") if k in before})
    elif isinstance(getattr(model.config, "blockprune", None), dict):
        # a vanilla checkpoint pruned again: its layers were renumbered, so this record's names are its own
        # indices; the earlier record (in the dense original's indices) is kept as it was
        info["pruned_from"] = {**parent, **model.config.blockprune}
    return info


def width_provenance(model: nn.Module, meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A width export's record: the depth pruning the model carries (its skip map, removed blocks and
    family), then `meta` and the format."""
    before = dict(getattr(model.config, "blockprune", None) or {})
    depth = {k: before[k] for k in ("skip", "removed", "base_model_type") if k in before}
    return {**depth, **meta, "format": fmt}


# -- removed branches: which modules go, and their stand-ins -----------------------------------------
def removed_modules(adapter: Adapter, removed: AbstractSet[str]) -> dict[str, str]:
    """Submodule path -> its replacement ("identity" for a removed branch's norms, else what the
    layer expects back from the removed module), for every submodule of every removed branch."""
    out: dict[str, str] = {}
    for name in sorted(removed, key=block_order):
        kind, layer = parse_unit(name)
        prefix = adapter.layer_prefix(layer)
        for sub in adapter.branch_modules[kind]:
            core = sub == adapter.branch_core[kind]
            stand_in = adapter.removed_core_output(kind) + (KEEPS_LENGTH if kind == "attn" and layer == 0 else "")
            out[f"{prefix}.{sub}"] = stand_in if core else "identity"
    return out


def attentionless_layers(removed: AbstractSet[str]) -> list[int]:
    """The layers whose attention block is removed: they hold no KV cache."""
    return sorted({layer for kind, layer in map(parse_unit, removed) if kind == "attn"})


def mask_modules(model: nn.Module, removed: AbstractSet[str]) -> dict[str, str]:
    """Replace the removed blocks' modules of `model` in place, exactly as the remote-code export does on
    load (layers without attention marked as holding no KV cache); returns the skip map it applied."""
    adapter = adapter_for(model)
    skip = removed_modules(adapter, removed)
    remove_modules(model, skip)
    no_attention = attentionless_layers(removed)
    if no_attention:
        adapter.removed_attention_config(model.config, no_attention)
    return skip


# -- writing -----------------------------------------------------------------------------------------
def render(template: str, out: Path, name: str | None = None, **fill: str) -> None:
    """Write templates/`template` into `out` (as `name`), its `{key}` fields filled; a modeling file that
    imports the stand-ins for removed branches gets them beside it."""
    text = (TEMPLATES / template).read_text()
    for k, v in fill.items():
        text = text.replace("{" + k + "}", v)
    (out / (name or template)).write_text(text)
    if "from .blockprune_removed import" in text:
        shutil.copyfile(TEMPLATES / "blockprune_removed.py", out / "blockprune_removed.py")


def save_extras(tokenizer, model: nn.Module, out: Path) -> None:
    """The tokenizer (its chat template included) and the generation config travel with the weights."""
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out)


def save_without(model: nn.Module, modules: dict[str, str], config: dict[str, Any], out: Path, tokenizer) -> None:
    """Save `model`'s weights minus everything under `modules`, with `config` as config.json.

    Weights keep their in-memory names (save_original_format=False): the checkpoint's own model type
    has no transformers conversion mapping, so names reverted to a family's legacy format would not be
    converted back on load."""
    prefixes = tuple(p + "." for p in modules)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    model.save_pretrained(out, state_dict=kept, save_original_format=False)
    for code in out.glob("*.py"):  # what a loaded checkpoint shipped: the exporter renders its own code
        code.unlink()
    atomic.write_json(out / "config.json", config)
    save_extras(tokenizer, model, out)
