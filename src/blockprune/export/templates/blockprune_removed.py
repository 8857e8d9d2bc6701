# Written by blockprune: what stands in for a removed residual branch. Shipped inside every checkpoint
# with removed branches (its modeling file imports it) and used by blockprune itself for in-memory masking.
import torch
from torch import nn


class RemovedNorm(nn.Module):
    """The norm that fed a removed branch: nothing to normalize any more."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class RemovedBranch(nn.Module):
    """A removed attention or MLP module: it adds nothing to the residual stream and holds no weights."""

    def __init__(self, returns_tuple: bool):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states=None, *args, **kwargs):
        if hidden_states is None:
            hidden_states = args[0] if args else next(iter(kwargs.values()))
        zero = torch.zeros_like(hidden_states)
        return (zero, None) if self.returns_tuple else zero


class RemovedFirstAttention(RemovedBranch):
    """A removed attention module in the first decoder layer. transformers reads the position of the next
    token from the KV cache's first slot (Cache.get_seq_length), so that slot cannot be a cache-less one:
    it keeps one number per token. Ones, because a static cache counts the positions with non-zero keys."""

    def forward(self, hidden_states=None, *args, **kwargs):
        from transformers.cache_utils import Cache

        out = super().forward(hidden_states, *args, **kwargs)
        # the cache's argument name differs between families and transformers versions
        cache = next((v for v in (*args, *kwargs.values()) if isinstance(v, Cache)), None)
        if cache is not None:
            h = out[0] if self.returns_tuple else out
            mark = h.new_ones(h.shape[0], 1, h.shape[1], 1)
            cache.update(mark, mark, 0)
        return out


#: suffix of a removed first-layer attention's kind ("zero_tuple" + KEEPS_LENGTH): see RemovedFirstAttention
KEEPS_LENGTH = "+length"


def remove_modules(model: nn.Module, modules: dict) -> None:
    """Replace each submodule path by its stand-in: "identity" (a norm), "zero" or "zero_tuple" (a module),
    the latter two with KEEPS_LENGTH for the first layer's attention."""
    for path, kind in modules.items():
        parent, _, attr = path.rpartition(".")
        if kind == "identity":
            stand_in = RemovedNorm()
        else:
            core = kind.removesuffix(KEEPS_LENGTH)
            stand_in = (RemovedFirstAttention if kind != core else RemovedBranch)(core == "zero_tuple")
        setattr(model.get_submodule(parent), attr, stand_in)
