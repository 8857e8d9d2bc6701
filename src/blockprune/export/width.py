"""Width-pruned models, whose matrices are physically narrower: the writers `vanilla` and `remote-code`
use for them.

- vanilla: every layer has the same widths and no branch is removed -> the base family's own config
  with `num_attention_heads`, `num_key_value_heads`, `head_dim` and `intermediate_size` set
  explicitly: loads with plain `from_pretrained`, no remote code. (It also needs the family's config
  to accept the head count: some insist on hidden_size % num_attention_heads == 0.)
- remote-code: widths differ between layers (the default, as the first and last layers stay dense) or
  the model was depth-pruned into blocks before -> the base family's config plus `blockprune.widths`
  and a modeling file (templates/modeling_blockprune_width.py) that resizes each layer's Linear
  modules before the weights load (`trust_remote_code=True`). A model depth-pruned into blocks before
  keeps its removed branches: its `skip` map is carried over and the width modeling file replaces those
  branches as the depth one does (self-contained, so the checkpoint does not depend on the depth
  template's version). Depth pruning after width pruning comes here too (`write_depth_on_width`).

Everything is read from the module shapes of the model given, so width pruning composes with depth
pruning and with itself."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassError
from torch import nn

from .. import atomic
from ..arch import adapter_for
from ..units import block_order
from ..width.modules import modules_for
from ..width.scores import head_dim, widths
from .common import Job, hf_base, mask_modules, render, save_extras, width_provenance

VANILLA_REFUSAL = ("the vanilla format needs the same widths in every layer (prune all layers: --layers all, with "
                   "--allocation uniform) and a head count the family's config accepts (hidden size divisible by "
                   "it); use --format remote-code (or auto)")


def uniform(ws: list[dict[str, int | None]], config: Any) -> bool:
    skip = getattr(config, "blockprune", {}).get("skip") if hasattr(config, "blockprune") else None
    return not skip and all(None not in w.values() for w in ws) and all(w == ws[0] for w in ws)


def vanilla_config(model: nn.Module, meta: dict[str, Any]) -> Any | None:
    """The base family's config with the narrower widths, or None where it cannot express the model:
    widths differ between layers, branches were removed, or the family's config validation refuses the
    head count (some require hidden_size % num_attention_heads == 0, even with head_dim set)."""
    ws = widths(model)
    if not uniform(ws, model.config):
        return None
    cfg = copy.deepcopy(model.config)
    cfg.num_attention_heads, cfg.num_key_value_heads = ws[0]["heads"], ws[0]["kv"]
    cfg.head_dim = head_dim(model)
    cfg.intermediate_size = ws[0]["channels"]
    cfg.blockprune = width_provenance(model, meta, "vanilla")
    try:
        cfg.validate()
    except (StrictDataclassError, ValueError):
        return None
    return cfg


def write_vanilla(job: Job, out: Path) -> None:
    pruned = copy.copy(job.model)  # a shallow copy with its own config: the weights are saved as they are
    pruned.config = vanilla_config(job.model, job.meta)
    pruned.save_pretrained(out)
    save_extras(job.tokenizer, job.model, out)


def write_remote_code(model: nn.Module, out: Path, meta: dict[str, Any], tokenizer) -> None:
    """Write `model` (narrowed, possibly with removed branches recorded in its `config.blockprune`'s
    `skip` and `removed`) into the folder `out` in the remote-code format."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    base_model, base_config = hf_base(type(model)), hf_base(type(model.config))
    base_type = base_config.model_type
    model_type = f"blockprune_{base_type}"
    info = width_provenance(model, meta, "remote-code")
    cfg = copy.deepcopy(model.config)
    layers_path = adapter.layer_prefix(0).rpartition(".")[0]
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
        render(name, out, **fill)  # the modeling file imports the stand-ins for removed branches: shipped too
    save_extras(tokenizer, model, out)


def write_depth_on_width(job: Job, out: Path) -> None:
    """Depth pruning of a width-pruned model: its removed branches replaced in memory (as
    `evaluate.subject.mask_in_memory` does), the new skip map and removed list merged into its
    `config.blockprune` (earlier removals kept), then written by `write_remote_code`, whose modeling
    file resizes each layer and replaces the removed branches on load."""
    model = job.model
    # a copy of the modules and config that shares the parameter tensors: no second copy of the weights
    pruned = copy.deepcopy(model, memo={id(p): p for p in model.parameters()})
    skip = mask_modules(pruned, job.removed)  # earlier attention-less layers are in its config already
    before = dict(pruned.config.blockprune)
    pruned.config.blockprune = {**before, "skip": {**(before.get("skip") or {}), **skip},
                                "removed": sorted(set(before.get("removed") or ()) | set(job.removed),
                                                  key=block_order)}
    write_remote_code(pruned, out, job.meta, job.tokenizer)
