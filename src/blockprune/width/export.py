"""Writing a width-pruned model as a checkpoint whose matrices are physically narrower.

- `vanilla`: every layer has the same widths and no branch is removed -> the base family's own
  config with `num_attention_heads`, `num_key_value_heads`, `head_dim` and `intermediate_size` set
  explicitly: loads with plain `from_pretrained`, no remote code. (`auto` also needs the family's
  config to accept the head count: Llama's insists on hidden_size % num_attention_heads == 0.)
- `remote-code`: widths differ between layers (the default, as the first and last layers stay
  dense) or the model was depth-pruned into blocks before -> the base family's config plus
  `blockprune.widths` and a modeling file (templates/modeling_blockprune_width.py) that resizes each
  layer's Linear modules before the weights load (`trust_remote_code=True`). A model depth-pruned
  into blocks before (a remote-code checkpoint of `blockprune.export`) keeps its removed branches:
  its `skip` map is carried over and the width modeling file replaces those branches as the depth
  one does (self-contained, so the checkpoint does not depend on the depth template's version).
  Depth pruning after width pruning comes back here too: `blockprune.export.export` replaces the
  removed branches of a copy of the width-pruned model, merges the skip map and removed list into
  its `config.blockprune`, and writes it with `write_remote_code`.

Everything is read from the module shapes of the model given, so width pruning composes with
depth pruning and with itself."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassError
from torch import nn

from .. import atomic
from ..arch import adapter_for
from ..errors import UserError
from ..export.checkpoint import hf_base, ship_removed
from .families import modules_for
from .scores import geometry

TEMPLATES = Path(__file__).parent / "templates"
FORMATS = ("auto", "vanilla", "remote-code")


def widths(model: nn.Module) -> list[dict[str, int | None]]:
    """Per layer: the query heads, KV heads and channels it has (None for an absent branch)."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    out = []
    for i in range(len(adapter.layers())):
        g = geometry(adapter, spec, i)
        out.append({"heads": g.heads, "kv": g.kv, "channels": g.channels})
    return out


def _head_dim(model: nn.Module) -> int:
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    return next(g.head_dim for g in (geometry(adapter, spec, i) for i in range(len(adapter.layers())))
                if g.head_dim is not None)


def _save_extras(tokenizer, model: nn.Module, out: Path) -> None:
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)


def uniform(ws: list[dict[str, int | None]], config: Any) -> bool:
    skip = getattr(config, "blockprune", {}).get("skip") if hasattr(config, "blockprune") else None
    return not skip and all(None not in w.values() for w in ws) and all(w == ws[0] for w in ws)


def _provenance(model: nn.Module, meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    before = dict(getattr(model.config, "blockprune", None) or {})
    depth = {k: before[k] for k in ("skip", "removed", "base_model_type") if k in before}
    return {**depth, **meta, "format": fmt}


def vanilla_config(model: nn.Module, meta: dict[str, Any]) -> Any | None:
    """The base family's config with the narrower widths, or None where it cannot express the model:
    widths differ between layers, branches were removed, or the family's config validation refuses the
    head count (Llama's requires hidden_size % num_attention_heads == 0, even with head_dim set)."""
    ws = widths(model)
    if not uniform(ws, model.config):
        return None
    cfg = copy.deepcopy(model.config)
    cfg.num_attention_heads, cfg.num_key_value_heads = ws[0]["heads"], ws[0]["kv"]
    cfg.head_dim = _head_dim(model)
    cfg.intermediate_size = ws[0]["channels"]
    cfg.blockprune = _provenance(model, meta, "vanilla")
    try:
        cfg.validate()
    except (StrictDataclassError, ValueError):
        return None
    return cfg


def _export_vanilla(model: nn.Module, out: Path, cfg: Any, tokenizer) -> None:
    pruned = copy.copy(model)  # a shallow copy with its own config: the weights are saved as they are
    pruned.config = cfg
    pruned.save_pretrained(out)
    _save_extras(tokenizer, model, out)


def _fill(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def write_remote_code(model: nn.Module, out: Path, meta: dict[str, Any], tokenizer) -> None:
    """Write `model` (narrowed, possibly with removed branches recorded in its `config.blockprune`'s
    `skip` and `removed`) into the folder `out` in the remote-code format."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    base_model, base_config = hf_base(type(model)), hf_base(type(model.config))
    base_type = base_config.model_type
    model_type = f"blockprune_{base_type}"
    info = _provenance(model, meta, "remote-code")
    cfg = copy.deepcopy(model.config)
    layers_path = adapter._layer_prefix(0).rpartition(".")[0]
    cfg.blockprune = {**info, "base_model_type": base_type, "widths": widths(model), "layers_path": layers_path,
                      "width_modules": {k: getattr(spec, k) for k in ("attn", "q", "k", "v", "o", "mlp", "gate",
                                                                      "up", "down")}}
    cfg.architectures = ["WidthPrunedForCausalLM"]
    cfg.auto_map = {"AutoConfig": "configuration_blockprune_width.WidthPrunedConfig",
                    "AutoModelForCausalLM": "modeling_blockprune_width.WidthPrunedForCausalLM"}
    d = cfg.to_dict()
    d["model_type"] = model_type
    model.save_pretrained(out)
    atomic.write_json(out / "config.json", d)
    fill = {"config_module": base_config.__module__, "config_class": base_config.__name__,
            "model_module": base_model.__module__, "model_class": base_model.__name__, "model_type": model_type}
    for name in ("configuration_blockprune_width.py", "modeling_blockprune_width.py"):
        (out / name).write_text(_fill(TEMPLATES / name, fill))
    ship_removed(out)
    _save_extras(tokenizer, model, out)


def export(model: nn.Module, out: str | Path, *, fmt: str = "auto", meta: dict[str, Any] | None = None,
           tokenizer=None) -> Path:
    """Write the (narrowed) `model` to `out`, atomically, in the format its widths allow."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    meta = meta or {}
    cfg = vanilla_config(model, meta) if fmt != "remote-code" else None
    if fmt == "auto":
        fmt = "vanilla" if cfg is not None else "remote-code"
    if fmt == "vanilla" and cfg is None:
        raise UserError("the vanilla format needs the same widths in every layer (prune all layers: "
                        "--layers all, with --allocation uniform) and a head count the family's config accepts "
                        "(hidden size divisible by it); use --format remote-code (or auto)")
    out = Path(out)
    with atomic.staged_dir(out) as tmp:
        if fmt == "vanilla":
            _export_vanilla(model, tmp, cfg, tokenizer)
        else:
            write_remote_code(model, tmp, meta, tokenizer)
    return out
