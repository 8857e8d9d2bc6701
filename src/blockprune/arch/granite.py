"""IBM Granite (3.x): Llama-shaped, with µP multipliers. Each branch's output is scaled by
`residual_multiplier` before it joins the residual stream, and logits are divided by `logits_scaling`
(the embedding multiplier is applied inside the backbone, so `capture` already includes it)."""
from __future__ import annotations

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
