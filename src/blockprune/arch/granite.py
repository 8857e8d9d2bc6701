"""IBM Granite (3.x): Llama-shaped, with µP multipliers. Each branch's output is scaled by
`residual_multiplier` before it joins the residual stream, and logits are divided by `logits_scaling`
(the embedding multiplier is applied inside the backbone, so `capture` already includes it).
Attention scores are scaled by `attention_multiplier`, where Llama uses 1 / sqrt(head_dim)."""
from __future__ import annotations

import math

import torch

from .llama import LlamaAdapter
from .registry import register


@register
class GraniteAdapter(LlamaAdapter):
    model_types = ("granite",)

    def branch(self, layer, kind, h, kwargs):
        return super().branch(layer, kind, h, kwargs) * self.config.residual_multiplier

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.config.logits_scaling

    def llama_difference(self):
        c = self.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        llama = {"embedding_multiplier": (1.0, "1"), "residual_multiplier": (1.0, "1"), "logits_scaling": (1.0, "1"),
                 "attention_multiplier": (head_dim ** -0.5, f"1/sqrt(head_dim) = {head_dim ** -0.5:.6g}")}
        off = [f"{k}={getattr(c, k)} (Llama's is {text})" for k, (v, text) in llama.items()
               if not math.isclose(getattr(c, k), v, rel_tol=1e-12)]
        return f"muP multipliers that Llama does not apply: {', '.join(off)}" if off else None
