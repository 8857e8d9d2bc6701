"""A physically narrower copy of a model: the kept rows/columns of q/k/v/o and gate/up/down.

The copy is the in-memory pruned model: its logits are what the exported checkpoint must reproduce
(masking.py computes the same without the copy). Norms shared across heads (per-head-dim q/k norms) and
biases of the output projections are untouched; q/k/v and gate/up biases are sliced with their rows."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..arch import adapter_for
from .allocation import Keep
from .modules import WidthModules, modules_for


def _rows(units: list[int], size: int) -> torch.Tensor:
    return torch.tensor([u * size + j for u in units for j in range(size)], dtype=torch.long)


def take(lin: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding `lin`'s kept output rows and input columns."""
    w = lin.weight.detach()
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    new = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            b = lin.bias.detach()
            new.bias.copy_(b.index_select(0, rows.to(b.device)) if rows is not None else b)
    return new


def _set_if_present(mod: nn.Module, name: str, value: int) -> None:
    # families differ in which width attributes their forward reads; keep whichever exist in step
    if hasattr(mod, name):
        setattr(mod, name, value)


def narrow_layer(layer: nn.Module, spec: WidthModules, keep: Keep) -> None:
    """Replace one layer's Linear modules, in place, by their kept slices."""
    if keep.heads is not None:
        attn = layer.get_submodule(spec.attn)
        d = attn.head_dim
        q_rows, kv_rows = _rows(keep.heads, d), _rows(keep.kv, d)
        setattr(attn, spec.q, take(attn.get_submodule(spec.q), rows=q_rows))
        setattr(attn, spec.k, take(attn.get_submodule(spec.k), rows=kv_rows))
        setattr(attn, spec.v, take(attn.get_submodule(spec.v), rows=kv_rows))
        setattr(attn, spec.o, take(attn.get_submodule(spec.o), cols=q_rows))
        attn.num_key_value_groups = len(keep.heads) // len(keep.kv)
        _set_if_present(attn, "num_heads", len(keep.heads))
        _set_if_present(attn, "num_key_value_heads", len(keep.kv))
    if keep.channels is not None:
        mlp = layer.get_submodule(spec.mlp)
        ch = torch.tensor(keep.channels, dtype=torch.long)
        for name in (spec.gate, spec.up):
            setattr(mlp, name, take(mlp.get_submodule(name), rows=ch))
        setattr(mlp, spec.down, take(mlp.get_submodule(spec.down), cols=ch))
        _set_if_present(mlp, "intermediate_size", len(keep.channels))


def narrow(model: nn.Module, keep: dict[int, Keep], *, in_place: bool = False) -> nn.Module:
    """A deep copy of `model` with each layer in `keep` narrowed, `model` left as it was; or, `in_place`,
    `model` itself narrowed (each layer's old projections freed as it goes)."""
    pruned = model if in_place else copy.deepcopy(model)
    adapter = adapter_for(pruned)
    spec = modules_for(adapter)
    for i, k in keep.items():
        narrow_layer(adapter.layers()[i], spec, k)
    return pruned
