"""Gemma 2 and Gemma 3 (text): "sandwich" norms and final logit soft-capping.

Each residual branch is norm -> module -> norm, all inside the branch:
    attn: post_attention_layernorm(self_attn(input_layernorm(h)))
    mlp:  post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
(note that `post_attention_layernorm` belongs to the attention branch here, unlike Llama). A removed
branch's post-norm would see zeros, and an RMSNorm of zeros is zeros, so export can replace the whole
sandwich with identity norms around a zero module. Sliding-window layers and Gemma 3's per-layer-type
rotary embeddings come from the backbone's own forward through `capture`."""
from __future__ import annotations

import torch

from .base import Adapter
from .registry import register


@register
class GemmaAdapter(Adapter):
    model_types = ("gemma2", "gemma3_text")
    branch_modules = {"attn": ("input_layernorm", "self_attn", "post_attention_layernorm"),
                      "mlp": ("pre_feedforward_layernorm", "mlp", "post_feedforward_layernorm")}
    branch_core = {"attn": "self_attn", "mlp": "mlp"}

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            out = mod.self_attn(hidden_states=mod.input_layernorm(h), **kwargs)[0]
            return mod.post_attention_layernorm(out)
        return mod.post_feedforward_layernorm(mod.mlp(mod.pre_feedforward_layernorm(h)))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        logits = super().head(h)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits
