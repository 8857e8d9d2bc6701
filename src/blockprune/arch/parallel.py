"""Parallel-residual families with one norm shared by both branches:
`h -> h + attn(norm(h)) + mlp(norm(h))` (Phi-2, Cohere Command-R).

The shared norm belongs to neither branch: removing one branch must keep it for the other, so it is
counted in neither block's parameters and stays in a remote-code export even when both go (a whole
layer dropped by vanilla export takes it along)."""
from __future__ import annotations

import torch

from .base import Adapter
from .registry import register


class SharedNormParallelAdapter(Adapter):
    parallel_residual = True
    shared_norm = "input_layernorm"
    branch_modules = {"attn": ("self_attn",), "mlp": ("mlp",)}
    branch_core = {"attn": "self_attn", "mlp": "mlp"}

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        x = getattr(mod, self.shared_norm)(h)
        if kind == "attn":
            return mod.self_attn(hidden_states=x, **kwargs)[0]
        return mod.mlp(x)


@register
class PhiAdapter(SharedNormParallelAdapter):
    model_types = ("phi",)

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        return self.backbone().final_layernorm(h)


@register
class CohereAdapter(SharedNormParallelAdapter):
    model_types = ("cohere",)

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.config.logit_scale


@register
class StableLmAdapter(SharedNormParallelAdapter):
    """StableLM: sequential pre-norm (StableLM 2, 3B-4E1T) or, with `use_parallel_residual`, both branches
    reading the one `input_layernorm`."""

    model_types = ("stablelm",)

    def __init__(self, model):
        super().__init__(model)
        self.parallel_residual = bool(self.config.use_parallel_residual)
        if not self.parallel_residual:
            self.branch_modules = {"attn": ("input_layernorm", "self_attn"), "mlp": ("post_attention_layernorm", "mlp")}

    def branch(self, layer, kind, h, kwargs):
        if kind == "mlp" and not self.parallel_residual:
            mod = self.layers()[layer]
            return mod.mlp(mod.post_attention_layernorm(h))
        return super().branch(layer, kind, h, kwargs)
