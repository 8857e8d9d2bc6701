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


def remove_modules(model: nn.Module, modules: dict) -> None:
    """Replace each submodule path by its stand-in: "identity" (a norm), "zero" or "zero_tuple" (a module)."""
    for path, kind in modules.items():
        parent, _, attr = path.rpartition(".")
        stand_in = RemovedNorm() if kind == "identity" else RemovedBranch(kind == "zero_tuple")
        setattr(model.get_submodule(parent), attr, stand_in)
