"""GPT-2: learned positions, LayerNorm and Conv1D projections with biases, blocks under `transformer.h`.

Its blocks take the cache, mask and encoder states positionally, so `_layer_kwargs` names them."""
from __future__ import annotations

import torch

from ..errors import UserError
from .base import Adapter
from .registry import register


@register
class GPT2Adapter(Adapter):
    model_types = ("gpt2",)
    branch_modules = {"attn": ("ln_1", "attn"), "mlp": ("ln_2", "mlp")}
    branch_core = {"attn": "attn", "mlp": "mlp"}

    def __init__(self, model):
        super().__init__(model)
        if getattr(self.config, "add_cross_attention", False):
            raise UserError("GPT-2 with cross-attention is an encoder-decoder part, not a causal LM blockprune prunes")

    def backbone(self):
        return self.model.transformer

    def layers(self):
        return self.backbone().h

    def _layer_kwargs(self, args, kwargs):
        # GPT2Block(hidden_states, past_key_values, attention_mask, encoder_hidden_states, ...)
        kwargs = dict(kwargs)
        if len(args) > 1:
            kwargs["attention_mask"] = args[1]
        for unused in ("past_key_values", "use_cache", "encoder_hidden_states", "encoder_attention_mask"):
            kwargs.pop(unused, None)
        return kwargs

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            return mod.attn(mod.ln_1(h), **kwargs)[0]
        return mod.mlp(mod.ln_2(h))

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        return self.backbone().ln_f(h)

    def renumber_layer(self, new_index: int) -> None:
        # with this option the attention scores are divided by (layer_idx + 1): moving a layer changes its math
        if getattr(self.config, "scale_attn_by_inverse_layer_idx", False):
            raise UserError("this GPT-2 scales attention by its layer index, so whole layers cannot be dropped "
                            "and renumbered: export with --format remote-code")
        super().renumber_layer(new_index)
