"""Writing and reading pruned checkpoints (see the package docstring for the formats)."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import AbstractSet, Any

import torch
from torch import nn

from .. import atomic
from ..arch import Adapter, adapter_for
from ..arch.base import family_type
from ..errors import UserError
from ..units import block_order, layer_blocks, parse_unit
from ..view import BlockView
from .templates.blockprune_removed import remove_modules

FORMATS = ("auto", "vanilla", "remote-code", "nemotron-nas")
TEMPLATES = Path(__file__).parent / "templates"


def whole_layers(removed: AbstractSet[str]) -> list[int] | None:
    """The removed layer indices if `removed` is exactly a set of whole layers, else None."""
    layers = {parse_unit(n)[1] for n in removed}
    if all(set(layer_blocks(i)) <= set(removed) for i in layers) and len(removed) == 2 * len(layers):
        return sorted(layers)
    return None


def hf_base(cls: type) -> type:
    """The transformers class a (possibly remote-code) model or config class derives from.

    A checkpoint loaded with its shipped modeling file (blockprune's own included) has classes from a
    dynamic module (`transformers_modules.<folder>...`) that exists only in that process: exported code
    must import the transformers classes underneath."""
    for c in cls.__mro__:
        if c.__module__.startswith("transformers.models."):
            return c
    raise UserError(f"{cls.__name__} does not derive from a transformers model class; cannot export it")


def earlier_pruning(model: nn.Module) -> dict[str, Any]:
    """The `config.blockprune` record of a depth-pruned checkpoint loaded with its shipped modeling file
    (remote-code or nemotron-nas), whose blocks it lists under "removed" are absent; {} for any other
    model. A vanilla checkpoint is the family's own class with layers renumbered: nothing to carry over."""
    info = getattr(model.config, "blockprune", None)
    if not isinstance(info, dict) or not info.get("removed") or type(model).__module__.startswith("transformers."):
        return {}
    return info


def provenance(model: nn.Module, removed: AbstractSet[str], meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    """What config.json records: what was removed, by which method, from which base model.

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


def removed_modules(adapter: Adapter, removed: AbstractSet[str]) -> dict[str, str]:
    """Submodule path -> its replacement ("identity" for a removed branch's norms, else what the
    layer expects back from the removed module), for every submodule of every removed branch."""
    out: dict[str, str] = {}
    for name in sorted(removed, key=block_order):
        kind, layer = parse_unit(name)
        prefix = adapter._layer_prefix(layer)
        for sub in adapter.branch_modules[kind]:
            core = sub == adapter.branch_core[kind]
            out[f"{prefix}.{sub}"] = adapter.removed_core_output(kind) if core else "identity"
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


def render(template: str, out: Path, name: str | None = None, **fill: str) -> None:
    text = (TEMPLATES / template).read_text()
    for k, v in fill.items():
        text = text.replace("{" + k + "}", v)
    (out / (name or template)).write_text(text)
    if "from .blockprune_removed import" in text:
        ship_removed(out)


def ship_removed(out: Path) -> None:
    """Put the stand-ins for removed branches beside a modeling file that imports them."""
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
    has no transformers conversion mapping, so names reverted to a family's legacy format (Mixtral's
    `block_sparse_moe`, GPT-NeoX's `embed_out`) would not be converted back on load."""
    prefixes = tuple(p + "." for p in modules)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    model.save_pretrained(out, state_dict=kept, save_original_format=False)
    for code in out.glob("*.py"):  # what a loaded checkpoint shipped: the exporter renders its own code
        code.unlink()
    atomic.write_json(out / "config.json", config)
    save_extras(tokenizer, model, out)


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


def _export_vanilla(model: nn.Module, removed: AbstractSet[str], out: Path, meta: dict[str, Any],
                    tokenizer) -> None:
    layers = whole_layers(removed)
    before = earlier_pruning(model)
    if layers is None:
        earlier = f" (with the blocks removed from it before: {', '.join(before['removed'])})" if before else ""
        raise UserError(f"the vanilla format only expresses whole removed layers; this plan{earlier} removes single "
                        "blocks: use --format remote-code (or auto)")
    n = len(adapter_for(model).layers())
    keep = [i for i in range(n) if i not in set(layers)]
    pruned = copy.deepcopy(model)
    if before:
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
    cfg.blockprune = provenance(model, removed, meta, "vanilla")
    pruned.save_pretrained(out)
    save_extras(tokenizer, model, out)


def _check_rebuilds(pruned: nn.Module) -> None:
    """The family's own class, built from the shortened config, must have exactly the kept weights.

    Configs that say what a layer is by its index (Qwen-MoE's `mlp_only_layers`/`decoder_sparse_step`)
    would otherwise load the renumbered layers into different modules."""
    with torch.device("meta"):
        fresh = type(pruned)(copy.deepcopy(pruned.config))
    want = {k: tuple(v.shape) for k, v in pruned.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise UserError(f"this {pruned.config.model_type} config ties layer structure to layer indices, so "
                        f"dropping whole layers changes the model (e.g. {diff}); export with --format remote-code")


def _export_remote_code(model: nn.Module, removed: AbstractSet[str], out: Path, meta: dict[str, Any],
                        tokenizer) -> None:
    """`removed` includes what a checkpoint pruned before lacks (see `export`): its skip map is merged in,
    and the templates import the transformers classes underneath its shipped ones."""
    adapter = adapter_for(model)
    skip = {**(earlier_pruning(model).get("skip") or {}), **removed_modules(adapter, removed)}
    no_attention = attentionless_layers(removed)
    model_type = f"blockprune_{family_type(model.config)}"
    cfg = copy.deepcopy(model.config)
    if no_attention:
        adapter.removed_attention_config(cfg, no_attention)
    cfg.blockprune = {**provenance(model, removed, meta, "remote-code"), "skip": skip}
    cfg.architectures = ["BlockPrunedForCausalLM"]
    cfg.auto_map = {"AutoConfig": "configuration_blockprune.BlockPrunedConfig",
                    "AutoModelForCausalLM": "modeling_blockprune.BlockPrunedForCausalLM"}
    d = cfg.to_dict()
    d["model_type"] = model_type
    if no_attention:  # a loaded checkpoint's config class may leave it out (NemotronNasConfig derives it)
        d["kv_sharing_modes"] = cfg.kv_sharing_modes
    d.pop("block_configs", None)  # a nemotron-nas checkpoint pruned again: the skip map says it all now
    save_without(model, skip, d, out, tokenizer)
    base_model, base_config = hf_base(type(model)), hf_base(type(model.config))
    render("configuration_blockprune.py", out, base_config_module=base_config.__module__,
           base_config_class=base_config.__name__, model_type=model_type)
    render("modeling_blockprune.py", out, model_module=base_model.__module__, model_class=base_model.__name__,
           config_file="configuration_blockprune", config_class="BlockPrunedConfig",
           model_name="BlockPrunedForCausalLM")


def width_pruned(model: nn.Module) -> bool:
    """Whether `model` is a width-pruned remote-code checkpoint (per-layer widths in `config.blockprune`)."""
    info = getattr(model.config, "blockprune", None)
    return isinstance(info, dict) and "widths" in info


def _refuse_for_width(fmt: str) -> UserError:
    why = {"vanilla": "the vanilla format writes the family's own config, which has one head count and one MLP "
                      "width for every layer",
           "nemotron-nas": "the nemotron-nas format is not written for width-pruned models yet"}[fmt]
    return UserError(f"this model is width-pruned with per-layer widths (config.blockprune['widths']), which only "
                     f"the remote-code format can express (it resizes each layer on load); {why}. Export with "
                     f"--format remote-code (or auto; fmt='remote-code' in Python)")


def _export_width_then_depth(model: nn.Module, removed: AbstractSet[str], out: Path, meta: dict[str, Any],
                             tokenizer) -> None:
    """Depth pruning of a width-pruned model: its removed branches replaced in memory (as
    `evaluate.subject.mask_in_memory` does), the new skip map and removed list merged into its
    `config.blockprune` (earlier removals kept), then written by the width exporter, whose modeling
    file resizes each layer and replaces the removed branches on load."""
    from ..width.export import write_remote_code

    # a copy of the modules and config that shares the parameter tensors: no second copy of the weights
    pruned = copy.deepcopy(model, memo={id(p): p for p in model.parameters()})
    skip = mask_modules(pruned, removed)  # earlier attention-less layers are in its config already
    before = dict(pruned.config.blockprune)
    pruned.config.blockprune = {**before, "skip": {**(before.get("skip") or {}), **skip},
                                "removed": sorted(set(before.get("removed") or ()) | set(removed), key=block_order)}
    write_remote_code(pruned, out, meta, tokenizer)


def export(model: nn.Module, removed: AbstractSet[str], out: str | Path, *, fmt: str = "auto",
           meta: dict[str, Any] | None = None, tokenizer=None) -> Path:
    """Write the pruned checkpoint of `model` without the `removed` blocks to `out` (atomically)."""
    from . import choose_format
    from .nemotron_nas import export_nemotron_nas

    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    removed = frozenset(removed)
    try:
        BlockView(model).check_names(removed)
    except ValueError as e:
        raise UserError(str(e)) from e
    if width_pruned(model):  # per-layer widths: only the width exporter's modeling file rebuilds them
        if fmt not in ("auto", "remote-code"):
            raise _refuse_for_width(fmt)
        fmt, writer = "remote-code", _export_width_then_depth
    else:
        # a checkpoint pruned before lacks its earlier blocks: every format writes them as removed too
        removed |= frozenset(earlier_pruning(model).get("removed", ()))
        if fmt == "auto":
            fmt = choose_format(removed)
        writer = {"vanilla": _export_vanilla, "remote-code": _export_remote_code,
                  "nemotron-nas": export_nemotron_nas}[fmt]
    out = Path(out)
    with atomic.staged_dir(out) as tmp:
        writer(model, removed, tmp, meta or {}, tokenizer)
    return out


def load(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Load a pruned (or any) checkpoint, with its own modeling code where it ships one.

    Refuses a checkpoint whose weights do not all land in the model: transformers would otherwise
    leave the missing ones randomly initialized and only log it."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise UserError(f"{path} is not a checkpoint folder (no config.json)")
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=True,
                                                       output_loading_info=True)
    wrong = {k: sorted(info.get(k) or ())[:5] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    wrong = {k: v for k, v in wrong.items() if v}
    if wrong:
        raise UserError(f"{path}: the checkpoint's weights do not match its model ({wrong}); it is damaged or "
                        f"was written by an incompatible exporter")
    return model.to(device).eval()
