"""`vanilla`: the family's own model class and config, no remote code.

A depth plan of whole layers only -> the same family with fewer layers, indices renumbered; a width plan
with the same widths in every layer -> the family's config with the narrower head counts and MLP width
(`width.py`). A checkpoint pruned before becomes its family's own class again once every removed branch
lies in a dropped layer."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..arch import adapter_for
from ..errors import UserError
from . import width
from .common import Job, earlier_pruning, hf_base, provenance, save_extras, whole_layers, width_refusal
from .registry import Format, register


def refusal(job: Job) -> str | None:
    if job.width == "pruned":
        return width_refusal("the vanilla format writes the family's own config, which has one head count and one "
                             "MLP width for every layer")
    if job.width == "narrowed":
        return None if width.vanilla_config(job.model, job.meta) is not None else width.VANILLA_REFUSAL
    if whole_layers(job.removed) is None:
        before = earlier_pruning(job.model) if job.model is not None else {}
        earlier = f" (with the blocks removed from it before: {', '.join(before['removed'])})" if before else ""
        return (f"the vanilla format only expresses whole removed layers; this plan{earlier} removes single "
                "blocks: use --format remote-code (or auto)")
    return None


def write(job: Job, out: Path) -> None:
    if job.width == "narrowed":
        width.write_vanilla(job, out)
        return
    model = job.model
    layers = set(whole_layers(job.removed))
    n = len(adapter_for(model).layers())
    keep = [i for i in range(n) if i not in layers]
    pruned = copy.deepcopy(model)
    if earlier_pruning(model):
        _as_family(pruned)
    pad = adapter_for(pruned)
    pad.layers().__init__([pad.layers()[i] for i in keep])  # a fresh ModuleList in the kept order
    for new in range(len(keep)):
        pad.renumber_layer(new)
    cfg = pruned.config
    cfg.num_hidden_layers = len(keep)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    modes = getattr(cfg, "kv_sharing_modes", None)  # "reuse" marked removed attention, in dropped layers now
    if modes is not None:
        modes = [modes[i] for i in keep]
        cfg.kv_sharing_modes = modes if any(m is not None for m in modes) else None
    _check_rebuilds(pruned)
    cfg.blockprune = provenance(model, job.removed, job.meta, "vanilla")
    pruned.save_pretrained(out)
    save_extras(job.tokenizer, model, out)


def _as_family(model: nn.Module) -> None:
    """Give a loaded pruned checkpoint (a copy) the transformers model and config classes its shipped ones
    derive from: once every removed branch lies in a dropped layer it is the family's own model."""
    old = model.config
    d = old.to_dict()
    for k in ("model_type", "architectures", "auto_map", "blockprune", "block_configs"):
        d.pop(k, None)
    cfg = hf_base(type(old)).from_dict(d)
    model.__class__ = hf_base(type(model))
    for mod in model.modules():
        if getattr(mod, "config", None) is old:
            mod.config = cfg


def _check_rebuilds(pruned: nn.Module) -> None:
    """The family's own class, built from the shortened config, must have exactly the kept weights.

    Configs that say what a layer is by its index (a sparse-MLP family's list of dense layers, or its
    step between sparse ones) would otherwise load the renumbered layers into different modules."""
    with torch.device("meta"):
        fresh = type(pruned)(copy.deepcopy(pruned.config))
    want = {k: tuple(v.shape) for k, v in pruned.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise UserError(f"this {pruned.config.model_type} config ties layer structure to layer indices, so "
                        f"dropping whole layers changes the model (e.g. {diff}); export with --format remote-code")


register(Format("vanilla", write, refusal,
                help="the family's own classes: whole layers removed (width plans: the same widths in every layer)"))
