"""`remote-code`: blocks removed inside layers -> the base family's weights minus the removed ones, and a
modeling file shipped in the checkpoint (`trust_remote_code=True`) that puts parameter-free stand-ins
where the removed branches were. Expresses every job: width-pruned models get the width modeling file
(`width.py`), which also resizes each layer."""
from __future__ import annotations

import copy
from pathlib import Path

from ..arch import adapter_for
from ..arch.base import family_type
from . import width
from .common import Job, attentionless_layers, earlier_pruning, hf_base, provenance, removed_modules, render, save_without
from .registry import Format, register


def write(job: Job, out: Path) -> None:
    """A checkpoint pruned before (its earlier removals are in `job.removed`): its skip map is merged in,
    and the templates import the transformers classes underneath its shipped ones."""
    if job.width == "narrowed":
        width.write_remote_code(job.model, out, job.meta, job.tokenizer)
        return
    if job.width == "pruned":
        width.write_depth_on_width(job, out)
        return
    model, removed = job.model, job.removed
    adapter = adapter_for(model)
    skip = {**(earlier_pruning(model).get("skip") or {}), **removed_modules(adapter, removed)}
    no_attention = attentionless_layers(removed)
    model_type = f"blockprune_{family_type(model.config)}"
    cfg = copy.deepcopy(model.config)
    if no_attention:
        adapter.removed_attention_config(cfg, no_attention)
    cfg.blockprune = {**provenance(model, removed, job.meta, "remote-code"), "skip": skip}
    cfg.architectures = ["BlockPrunedForCausalLM"]
    cfg.auto_map = {"AutoConfig": "configuration_blockprune.BlockPrunedConfig",
                    "AutoModelForCausalLM": "modeling_blockprune.BlockPrunedForCausalLM"}
    d = cfg.to_dict()
    d["model_type"] = model_type
    if no_attention:  # a loaded checkpoint's config class may leave it out (NemotronNasConfig derives it)
        d["kv_sharing_modes"] = cfg.kv_sharing_modes
    d.pop("block_configs", None)  # a nemotron-nas checkpoint pruned again: the skip map says it all now
    save_without(model, skip, d, out, job.tokenizer)
    base_model, base_config = hf_base(type(model)), hf_base(type(model.config))
    render("configuration_blockprune.py", out, base_config_module=base_config.__module__,
           base_config_class=base_config.__name__, model_type=model_type)
    render("modeling_blockprune.py", out, model_module=base_model.__module__, model_class=base_model.__name__,
           config_file="configuration_blockprune", config_class="BlockPrunedConfig",
           model_name="BlockPrunedForCausalLM")


register(Format("remote-code", write,
                help="any plan: the family's weights minus the removed ones, with a modeling file "
                     "(trust_remote_code=True)"))
