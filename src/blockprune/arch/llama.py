"""Pre-norm decoders with `input_layernorm -> self_attn` and `post_attention_layernorm -> mlp` branches.

Covers Llama (and SmolLM, Mistral, Ministral), Qwen2 (q/k/v bias), Qwen3 (q/k norms), Phi-3 (fused
projections), Gemma 1 (its embedding scale and (1 + w) norms live inside the stock modules), StarCoder2
(LayerNorm, biases, c_fc/c_proj MLP), OLMo (non-parametric LayerNorm), GLM (fused gate-up), Helium,
Nemotron (LayerNorm1P, squared-ReLU MLP), and the MoE families whose sparse MLP, router included, sits
at `layer.mlp` (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE; transformers 5 names Mixtral's `mlp`)."""
from __future__ import annotations

from .base import Adapter
from .registry import register


@register
class LlamaAdapter(Adapter):
    model_types = ("llama", "mistral", "ministral", "qwen2", "qwen3", "phi3", "gemma", "starcoder2", "olmo", "glm",
                   "helium", "nemotron", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
    branch_modules = {"attn": ("input_layernorm", "self_attn"), "mlp": ("post_attention_layernorm", "mlp")}
    branch_core = {"attn": "self_attn", "mlp": "mlp"}

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            return mod.self_attn(hidden_states=mod.input_layernorm(h), **kwargs)[0]
        out = mod.mlp(mod.post_attention_layernorm(h))
        return out[0] if isinstance(out, tuple) else out  # some MoE blocks also return router logits
