"""The narrowed model's forward pass on the dense model, without a second copy of the weights.

A removed query head reaches the rest of the model only through its columns of the output projection,
and a removed MLP channel only through its column of the down projection (a removed KV group feeds only
the query heads removed with it). Zeroing those inputs, and adding the compensation biases to the two
projections' outputs, therefore computes what `slicing.narrow` and `bias.add` build, to the rounding of a
sum that also adds zeros. `prune` scores its pruned model this way: a narrowed copy would double the
weights' memory, which is what kept width methods off an 8B model on a 24 GB machine."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..arch import adapter_for
from .allocation import Keep
from .modules import modules_for
from .slicing import _rows


@contextmanager
def masked(model: nn.Module, keep: dict[int, Keep],
           biases: dict[int, dict[str, torch.Tensor]] | None = None) -> Iterator[nn.Module]:
    """`model` computing as its narrowed copy would while the context lasts (hooks, removed on exit)."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    handles = []
    try:
        for i, k in keep.items():
            layer = adapter.layers()[i]
            if k.heads is not None:
                attn = layer.get_submodule(spec.attn)
                handles.append(_keep_inputs(attn.get_submodule(spec.o), _rows(k.heads, attn.head_dim)))
            if k.channels is not None:
                down = layer.get_submodule(spec.mlp).get_submodule(spec.down)
                handles.append(_keep_inputs(down, torch.tensor(k.channels, dtype=torch.long)))
            for key, path, name in (("o", spec.attn, spec.o), ("down", spec.mlp, spec.down)):
                if key in (biases or {}).get(i, {}):
                    lin = layer.get_submodule(path).get_submodule(name)
                    b = biases[i][key].to(device=lin.weight.device, dtype=lin.weight.dtype)
                    handles.append(lin.register_forward_hook(lambda _m, _a, out, b=b: out + b))
        yield model
    finally:
        for h in handles:
            h.remove()


def _keep_inputs(lin: nn.Linear, kept: torch.Tensor):
    mask = torch.zeros(lin.in_features, dtype=lin.weight.dtype, device=lin.weight.device)
    mask[kept.to(mask.device)] = 1
    return lin.register_forward_pre_hook(lambda _m, args: (args[0] * mask, *args[1:]))
