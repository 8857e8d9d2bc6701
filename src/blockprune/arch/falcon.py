"""Falcon, in its three layer shapes (chosen by the config, so the adapter sets its structure per model):

- `parallel_attn` with one shared `input_layernorm` (Falcon-7B): `h + attn(ln(h)) + mlp(ln(h))`; the
  shared norm belongs to neither branch (see `parallel.py`);
- `new_decoder_architecture` with `ln_attn` and `ln_mlp` (Falcon-40B/180B): parallel, one norm each;
- sequential (`parallel_attn=False`, Falcon-RW): `input_layernorm` then `post_attention_layernorm`.

Blocks live at `transformer.h`, return `(hidden_states, attn_weights)`, name the cache `layer_past`
and may take ALiBi biases; `capture` records all of it from the stock forward."""
from __future__ import annotations

import torch

from .base import Adapter
from .registry import register


@register
class FalconAdapter(Adapter):
    model_types = ("falcon",)
    branch_core = {"attn": "self_attention", "mlp": "mlp"}

    def __init__(self, model):
        super().__init__(model)
        cfg = self.config
        two_norms = cfg.new_decoder_architecture and cfg.num_ln_in_parallel_attn == 2
        self.parallel_residual = bool(cfg.parallel_attn or cfg.new_decoder_architecture)
        if two_norms:
            self.norms = {"attn": "ln_attn", "mlp": "ln_mlp"}
        elif self.parallel_residual:
            self.norms = {"attn": "input_layernorm", "mlp": "input_layernorm"}
        else:
            self.norms = {"attn": "input_layernorm", "mlp": "post_attention_layernorm"}
        shared = self.norms["attn"] == self.norms["mlp"]
        # a shared norm is owned by neither branch: removing one must leave it to the other
        self.branch_modules = {k: (self.branch_core[k],) if shared else (self.norms[k], self.branch_core[k])
                               for k in ("attn", "mlp")}

    def backbone(self):
        return self.model.transformer

    def layers(self):
        return self.backbone().h

    def _layer_kwargs(self, args, kwargs):
        kwargs = super()._layer_kwargs(args, kwargs)
        kwargs.pop("layer_past", None)
        return kwargs

    def _stub_output(self, hidden_states):
        return hidden_states, None

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        x = getattr(mod, self.norms[kind])(h)
        if kind == "attn":
            return mod.self_attention(x, **kwargs)[0]
        return mod.mlp(x)

    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        return self.backbone().ln_f(h)
