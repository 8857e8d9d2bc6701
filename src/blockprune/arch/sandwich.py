"""Families whose residual branches carry a norm after the module, inside the branch:
`h -> h + post(module(pre(h)))`, the pre-norm absent in some.

- Gemma 2 / Gemma 3: pre and post norms on both branches ("sandwich"), final logit soft-capping.
  Note `post_attention_layernorm` belongs to the attention branch here, unlike Llama.
- GLM-4: the same shape under other names.
- OLMo 2 / OLMo 3 / EXAONE 4: post-norms only (the module reads the raw residual stream).

A removed branch's post-norm would see zeros, and a norm of zeros is zeros, so export replaces the
norms by identities around a zero module. Sliding-window layers and per-layer-type rotary embeddings
come from the backbone's own forward through `capture`."""
from __future__ import annotations

from typing import ClassVar

import torch

from .base import Adapter
from .registry import register


class SandwichAdapter(Adapter):
    #: per kind: (pre-norm or None, module, post-norm or None), as the layer's attribute names
    sandwich: ClassVar[dict[str, tuple[str | None, str, str | None]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.branch_modules = {k: tuple(n for n in names if n) for k, names in cls.sandwich.items()}
        cls.branch_core = {k: names[1] for k, names in cls.sandwich.items()}

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        pre, core, post = self.sandwich[kind]
        x = getattr(mod, pre)(h) if pre else h
        if kind == "attn":
            out = getattr(mod, core)(hidden_states=x, **kwargs)[0]
        else:
            out = getattr(mod, core)(x)
        return getattr(mod, post)(out) if post else out


@register
class GemmaAdapter(SandwichAdapter):
    model_types = ("gemma2", "gemma3_text")
    sandwich = {"attn": ("input_layernorm", "self_attn", "post_attention_layernorm"),
                "mlp": ("pre_feedforward_layernorm", "mlp", "post_feedforward_layernorm")}

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits


@register
class Glm4Adapter(SandwichAdapter):
    model_types = ("glm4",)
    sandwich = {"attn": ("input_layernorm", "self_attn", "post_self_attn_layernorm"),
                "mlp": ("post_attention_layernorm", "mlp", "post_mlp_layernorm")}


@register
class PostNormAdapter(SandwichAdapter):
    model_types = ("olmo2", "olmo3", "exaone4")
    sandwich = {"attn": (None, "self_attn", "post_attention_layernorm"),
                "mlp": (None, "mlp", "post_feedforward_layernorm")}
