"""`nemotron-nas`: Llama-layout models in the Nemotron-NAS / DeciLM layout that vLLM serves natively.

vLLM's `DeciLMForCausalLM` (model_type "nemotron-nas") builds each decoder layer from
`config.block_configs[i]`: attention `no_op` drops the layer's input norm and attention (and its KV
cache), FFN `no_op` drops the post-attention norm and MLP; kept blocks are Llama's, with
`num_attention_heads // n_heads_in_group` KV heads and an FFN width from `ffn_mult`
(`int(2 * ffn_mult * hidden / 3)` rounded up to a multiple of 256) or, in newer vLLM, from an explicit
`intermediate_size`. Weight names are Llama's. The checkpoint also ships a config class and modeling
file so that transformers loads it with `trust_remote_code=True`.

DeciLM runs Llama's arithmetic, so the format is written only for models that compute exactly as a Llama
with the same weights: Llama's weight layout (`_layout_problem`) is not enough, the family's adapter must
also say its forward is Llama's (`Adapter.llama_difference`: µP multipliers, interleaved rotary
embeddings or layers without rotary embeddings make another model from the same weights). Llama's
layout itself (its weights' names and shapes, its transformers class) is in `arch/llama.py`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import AbstractSet, Any

from torch import nn

from ..arch import adapter_for
from ..arch.base import family_type
from ..arch.llama import LLAMA_CLASS, LLAMA_LAYERS, LLAMA_TOP, LlamaAdapter, llama_layer_shapes
from ..errors import UserError
from ..units import KINDS, parse_unit, unit_name
from ..view import BlockView
from .common import Job, provenance, removed_modules, render, save_without, width_refusal
from .registry import Format, register
from .templates.configuration_nemotron_nas import ffn_mult_to_intermediate_size

# per branch kind: the Llama layer's submodules that a no-op block drops (DeciLM builds none of them)
LLAMA_BRANCHES = {kind: tuple(f"{sub}." for sub in subs) for kind, subs in LlamaAdapter.branch_modules.items()}


def _layout_problem(model: nn.Module, removed: AbstractSet[str] = frozenset()) -> str | None:
    """What DeciLM cannot express in `model`'s weights, or None: its layers are exactly Llama's (no q/k
    norms, no fused projections or partial biases, no experts, SiLU gate, no sliding window). The
    `removed` branches are no-op blocks and need no weights (a checkpoint pruned before has none there)."""
    cfg = model.config
    if getattr(cfg, "hidden_act", None) != "silu":
        return f"activation {getattr(cfg, 'hidden_act', None)!r} (DeciLM's MLP is SiLU-gated)"
    if getattr(cfg, "sliding_window", None) is not None:
        return "sliding-window attention (DeciLM attends to the whole context)"
    sd = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    top = {k for k in sd if not k.startswith(f"{LLAMA_LAYERS}.")}
    if not top <= set(LLAMA_TOP):
        return f"weights outside Llama's layout: {sorted(top - set(LLAMA_TOP))[:3]}"
    full = llama_layer_shapes(cfg)
    for i in range(cfg.num_hidden_layers):
        prefix = f"{LLAMA_LAYERS}.{i}."
        gone = tuple(p for kind, subs in LLAMA_BRANCHES.items() if unit_name(kind, i) in removed for p in subs)
        want = {k: s for k, s in full.items() if not k.startswith(gone)}
        layer = {k[len(prefix):]: s for k, s in sd.items() if k.startswith(prefix)}
        got = {k: s for k, s in layer.items() if not k.startswith(gone)}
        if got != want:
            return f"layer {i} unlike a Llama layer in {sorted(set(got.items()) ^ set(want.items()))[:3]}"
    return None


def check_llama_layout(model: nn.Module, removed: AbstractSet[str] = frozenset()) -> None:
    """Refuse what DeciLM would not compute exactly: weights outside Llama's layout, or a family whose
    forward differs from Llama's for the same weights (its adapter's `llama_difference`)."""
    family = family_type(model.config)
    why = _layout_problem(model, removed)
    if why is not None:
        raise UserError(f"--format nemotron-nas needs a Llama-layout model, and this {family} model has {why}; "
                        f"export with --format remote-code")
    why = adapter_for(model).llama_difference()
    if why is not None:
        raise UserError(f"--format nemotron-nas writes a checkpoint that DeciLM computes exactly as Llama does, and "
                        f"this {family} model computes differently ({why}), so the checkpoint would be another "
                        f"model; export with --format remote-code")


def ffn_width(intermediate_size: int, hidden_size: int) -> dict[str, Any]:
    """DeciLM's `ffn_mult` where its rounding reproduces the width exactly, else `intermediate_size`.

    `ffn_mult` is what every DeciLM reader understands (NVIDIA's code, vLLM, llama.cpp), but the rule
    rounds up to a multiple of 256, so widths that are not multiples of 256 need the explicit field."""
    mult = round(intermediate_size * 3 / (2 * hidden_size), 6)
    if ffn_mult_to_intermediate_size(mult, hidden_size) == intermediate_size:
        return {"ffn_mult": mult}
    return {"intermediate_size": intermediate_size}


def block_configs(config, removed: AbstractSet[str]) -> list[dict[str, Any]]:
    group = config.num_attention_heads // config.num_key_value_heads
    width = ffn_width(config.intermediate_size, config.hidden_size)
    out = []
    for i in range(config.num_hidden_layers):
        attn_gone, ffn_gone = (unit_name(kind, i) in removed for kind in KINDS)
        out.append({"attention": {"no_op": attn_gone, "replace_with_linear": False,
                                  "n_heads_in_group": None if attn_gone else group},
                    "ffn": {"no_op": ffn_gone, "replace_with_linear": False, **({} if ffn_gone else width)}})
    return out


def legacy_rope(rope: dict[str, Any]) -> dict[str, Any]:
    """transformers 4 (and the vLLM releases built on it) read `rope_theta` / `rope_scaling`, not
    transformers 5's `rope_parameters`; without them they would silently use a default base."""
    out: dict[str, Any] = {}
    if "rope_theta" in rope:
        out["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        out["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    return out


def _check_starts_with_attention(view: BlockView, removed: AbstractSet[str]) -> None:
    # vLLM's DeciLM layer carries the residual stream separately from the first kept attention on;
    # an FFN before any attention calls its fused add-norm with no residual and fails
    kept = [b.name for b in view.blocks if b.name not in removed]
    if kept and parse_unit(kept[0])[0] == "mlp":
        raise UserError(f"vLLM's DeciLM cannot run a model whose first kept block is an MLP ({kept[0]}: the "
                        f"attention blocks before it are removed); export with --format remote-code")


def refusal(job: Job) -> str | None:
    if job.width == "pruned":
        return width_refusal("the nemotron-nas format is not written for width-pruned models yet")
    if job.width == "narrowed":
        return ("the nemotron-nas format is not written for width-pruned models yet; use --format remote-code "
                "(or auto)")
    return None  # what DeciLM cannot express shows in the weights: `write` checks it


def write(job: Job, out: Path) -> None:
    model, removed, meta, tokenizer = job.model, job.removed, job.meta, job.tokenizer
    adapter = adapter_for(model)
    check_llama_layout(model, removed)
    _check_starts_with_attention(BlockView(model, adapter), removed)
    cfg = copy.deepcopy(model.config)
    d = cfg.to_dict()
    d.pop("layer_types", None)  # every DeciLM layer is full attention or none, as block_configs say
    d.pop("kv_sharing_modes", None)  # derived from block_configs on load (a checkpoint pruned before has one)
    d.update(model_type="nemotron-nas", architectures=["DeciLMForCausalLM"],
             auto_map={"AutoConfig": "configuration_nemotron_nas.NemotronNasConfig",
                       "AutoModelForCausalLM": "modeling_nemotron_nas.DeciLMForCausalLM"},
             block_configs=block_configs(cfg, removed), blockprune=provenance(model, removed, meta, "nemotron-nas"))
    d.update(legacy_rope(d.get("rope_parameters") or {}))
    save_without(model, removed_modules(adapter, removed), d, out, tokenizer)
    render("configuration_nemotron_nas.py", out)
    render("modeling_blockprune.py", out, "modeling_nemotron_nas.py",
           model_module=LLAMA_CLASS[0], model_class=LLAMA_CLASS[1],
           config_file="configuration_nemotron_nas", config_class="NemotronNasConfig", model_name="DeciLMForCausalLM")


register(Format("nemotron-nas", write, refusal,
                help="Llama-layout models in the DeciLM layout vLLM serves natively"))
