"""Bias compensation (FLAP, An et al., 2024; CASIA-IVA-Lab/FLAP lib/prune.py `compress`): what the
removed input channels of the output and down projections contributed on average over the calibration
tokens is folded into those projections' output bias,

    b_o    += W_o[:, removed]    @ mean(x_o[removed])
    b_down += W_down[:, removed] @ mean(a[removed])

so each compensated projection's output keeps the dense model's calibration mean (given the same inputs).

A checkpoint must still load with `from_pretrained`, so the biases must be expressible by the family's
config: the adapter's `WidthModules.output_biases` names, per model type, the config flag that gives the
attention projections biases and the one that gives the MLP projections biases (Llama: `attention_bias`,
`mlp_bias`). A flag gives *every* Linear of its branch a bias, so the q/k/v and gate/up projections
(and the o/down projections of layers not pruned) get zero biases, in memory as in the checkpoint, and
the plan counts them as parameters. Families without both flags are refused."""
from __future__ import annotations

import torch
from torch import nn

from ..arch import Adapter, adapter_for
from ..errors import UserError
from .allocation import Keep
from .modules import family, geometry, has_branch, modules_for


def flags(adapter: Adapter) -> tuple[str, str]:
    """The (attention, MLP) bias flags of this model's config, or a one-line UserError."""
    spec = modules_for(adapter)
    found = spec.bias_flags(family(adapter))
    if found is None:
        able = sorted({t for t, _, _ in spec.output_biases})
        raise UserError(f"bias compensation (flap) does not support {family(adapter)}: its config cannot give the "
                        f"{spec.o} and {spec.down} projections a bias (supported: {', '.join(able) or 'none'})")
    return found


def _rows(units: list[int], size: int) -> list[int]:
    return [u * size + j for u in units for j in range(size)]


def deltas(adapter: Adapter, keep: dict[int, Keep],
           means: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, torch.Tensor]]:
    """Per pruned layer, the float64 bias added to "o" and "down": the removed inputs' mean contribution."""
    spec = modules_for(adapter)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for i, k in keep.items():
        geo = geometry(adapter, spec, i)
        layer = adapter.layers()[i]
        d = {}
        if k.heads is not None:
            kept = set(_rows(k.heads, geo.head_dim))
            cols = [c for c in range(geo.heads * geo.head_dim) if c not in kept]
            w = layer.get_submodule(spec.attn).get_submodule(spec.o).weight.detach().double().cpu()
            d["o"] = w[:, cols] @ means[i]["o"][cols].double() if cols else torch.zeros(w.shape[0], dtype=torch.float64)
        if k.channels is not None:
            kept = set(k.channels)
            cols = [c for c in range(geo.channels) if c not in kept]
            w = layer.get_submodule(spec.mlp).get_submodule(spec.down).weight.detach().double().cpu()
            d["down"] = w[:, cols] @ means[i]["down"][cols].double() if cols else torch.zeros(w.shape[0],
                                                                                               dtype=torch.float64)
        out[i] = d
    return out


def _linears(adapter: Adapter, layer: int) -> list[tuple[str, nn.Module, str]]:
    """(kind, parent module, attribute) of every projection of the layer's present branches."""
    spec = modules_for(adapter)
    mod = adapter.layers()[layer]
    out = []
    if has_branch(adapter, spec, layer, "attn"):
        attn = mod.get_submodule(spec.attn)
        out += [("attn", attn, n) for n in (spec.q, spec.k, spec.v, spec.o)]
    if has_branch(adapter, spec, layer, "mlp"):
        mlp = mod.get_submodule(spec.mlp)
        out += [("mlp", mlp, n) for n in (spec.gate, spec.up, spec.down)]
    return out


def zero_bias_params(adapter: Adapter, layers: list[int] | None = None) -> int:
    """The bias entries `add` would create as zeros in these layers (all by default): their Linears'
    outputs where they have no bias yet."""
    idx = range(len(adapter.layers())) if layers is None else layers
    return sum(getattr(p, n).out_features for i in idx for _, p, n in _linears(adapter, i)
               if getattr(p, n).bias is None)


def created(adapter: Adapter, keep: dict[int, Keep]) -> int:
    """The bias entries `add` would create on the model narrowed to `keep` (what `zero_bias_params` counts
    on that copy), counted on the dense model: q/k/v and gate/up keep only their kept rows."""
    spec = modules_for(adapter)
    n = 0
    for i in range(len(adapter.layers())):
        k = keep.get(i)
        d = geometry(adapter, spec, i).head_dim
        for kind, parent, name in _linears(adapter, i):
            lin = getattr(parent, name)
            if lin.bias is not None:
                continue
            rows = lin.out_features
            if kind == "attn" and k is not None and k.heads is not None and name in (spec.q, spec.k, spec.v):
                rows = (len(k.heads) if name == spec.q else len(k.kv)) * d
            elif kind == "mlp" and k is not None and k.channels is not None and name in (spec.gate, spec.up):
                rows = len(k.channels)
            n += rows
    return n


def add(model: nn.Module, biases: dict[int, dict[str, torch.Tensor]]) -> int:
    """Give `model` (in place) the biases its config flags imply, zero where new, plus `biases` on the
    o/down projections of the layers named; returns how many bias entries were created."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    attn_flag, mlp_flag = flags(adapter)
    created = 0
    for i in range(len(adapter.layers())):
        for _, parent, name in _linears(adapter, i):
            lin = getattr(parent, name)
            if lin.bias is None:
                lin.bias = nn.Parameter(torch.zeros(lin.out_features, dtype=lin.weight.dtype, device=lin.weight.device))
                created += lin.out_features
        for key, name, path in (("o", spec.o, spec.attn), ("down", spec.down, spec.mlp)):
            if key in biases.get(i, {}):
                lin = adapter.layers()[i].get_submodule(path).get_submodule(name)
                with torch.no_grad():
                    lin.bias.add_(biases[i][key].to(device=lin.bias.device, dtype=lin.bias.dtype))
    setattr(model.config, attn_flag, True)
    setattr(model.config, mlp_flag, True)
    return created
