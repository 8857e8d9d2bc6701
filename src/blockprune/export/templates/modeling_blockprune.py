# Written by blockprune: the base family's model with some residual branches removed.
# `config.removed_modules()` maps each decoder layer's submodule path to what replaces it: "identity"
# for the norm that fed a removed branch, "zero" / "zero_tuple" for the removed module itself. The
# removed weights are absent from the checkpoint, and layers without attention hold no KV cache.
import torch
from torch import nn

from {model_module} import {model_class} as _Base

from .{config_file} import {config_class}


class RemovedNorm(nn.Module):
    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class RemovedBranch(nn.Module):
    def __init__(self, returns_tuple: bool):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states=None, *args, **kwargs):
        if hidden_states is None:
            hidden_states = args[0] if args else next(iter(kwargs.values()))
        zero = torch.zeros_like(hidden_states)
        return (zero, None) if self.returns_tuple else zero


def _replacement(kind):
    if kind == "identity":
        return RemovedNorm()
    return RemovedBranch(kind == "zero_tuple")


class {model_name}(_Base):
    config_class = {config_class}

    def __init__(self, config):
        super().__init__(config)
        for path, kind in config.removed_modules().items():
            parent_path, _, attr = path.rpartition(".")
            setattr(self.get_submodule(parent_path), attr, _replacement(kind))
