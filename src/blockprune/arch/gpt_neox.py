"""GPT-NeoX / Pythia: LayerNorm with biases, fused QKV, partial rotary, and (usually) parallel residual.

With `use_parallel_residual` both branches read the layer input, `h + attn(ln1(h)) + mlp(ln2(h))`;
masking one leaves exactly the model without it, which the view handles when `parallel_residual` is set.
Without it the layer is the usual sequential pre-norm pair."""
from __future__ import annotations

import torch

from .base import Adapter
from .registry import register


@register
class GPTNeoXAdapter(Adapter):
    model_types = ("gpt_neox",)
    branch_modules = {"attn": ("input_layernorm", "attention"), "mlp": ("post_attention_layernorm", "mlp")}
    branch_core = {"attn": "attention", "mlp": "mlp"}

    def __init__(self, model):
        super().__init__(model)
        self.parallel_residual = bool(self.config.use_parallel_residual)

    def backbone(self):
        return self.model.gpt_neox

    def _layer_kwargs(self, args, kwargs):
        kwargs = super()._layer_kwargs(args, kwargs)
        kwargs.pop("layer_past", None)  # GPT-NeoX's name for the KV cache
        return kwargs

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            return mod.attention(mod.input_layernorm(h), **kwargs)[0]
        return mod.mlp(mod.post_attention_layernorm(h))

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        return self.backbone().final_layer_norm(h)
