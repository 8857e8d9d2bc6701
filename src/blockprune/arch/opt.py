"""OPT: learned positions, LayerNorm and biases everywhere, and an MLP written inline in the layer
(`final_layer_norm -> fc1 -> activation -> fc2`), so the MLP branch is three submodules.

Only pre-norm OPT (`do_layer_norm_before`, every size but 350m) is a sum of residual branches; the
post-norm variant normalizes the residual stream itself and is refused."""
from __future__ import annotations

import torch

from ..errors import UserError
from .base import Adapter
from .registry import register


@register
class OPTAdapter(Adapter):
    model_types = ("opt",)
    # export replaces fc1 by identity and fc2 by zeros: fc1's hidden-size input flows to a zero output
    branch_modules = {"attn": ("self_attn_layer_norm", "self_attn"), "mlp": ("final_layer_norm", "fc1", "fc2")}
    branch_core = {"attn": "self_attn", "mlp": "fc2"}

    def __init__(self, model):
        super().__init__(model)
        if not self.config.do_layer_norm_before:
            raise UserError("post-norm OPT (do_layer_norm_before=False, e.g. opt-350m) normalizes the residual "
                            "stream between blocks, so its blocks cannot be removed independently; not supported")

    def backbone(self):
        return self.model.model.decoder

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            return mod.self_attn(hidden_states=mod.self_attn_layer_norm(h), **kwargs)[0]
        return mod.fc2(mod.activation_fn(mod.fc1(mod.final_layer_norm(h))))

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        dec = self.backbone()
        if dec.final_layer_norm is not None:
            h = dec.final_layer_norm(h)
        if dec.project_out is not None:
            h = dec.project_out(h)
        return h
