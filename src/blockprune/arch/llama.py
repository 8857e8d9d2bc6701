"""Pre-norm decoders with `input_layernorm -> self_attn` and `post_attention_layernorm -> mlp` branches.

Covers Llama (and SmolLM, Mistral, Ministral), Qwen2 (q/k/v bias), Qwen3 (q/k norms), Phi-3 (fused
projections), Gemma 1 (its embedding scale and (1 + w) norms live inside the stock modules), StarCoder2
(LayerNorm, biases, c_fc/c_proj MLP), OLMo (non-parametric LayerNorm), GLM (fused gate-up), Helium,
Nemotron (LayerNorm1P, squared-ReLU MLP), and the MoE families whose sparse MLP, router included, sits
at `layer.mlp` (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE; transformers 5 names Mixtral's `mlp`)."""
from __future__ import annotations

from typing import ClassVar

from .base import Adapter, WidthModules, family_type
from .registry import register


@register
class LlamaAdapter(Adapter):
    model_types = ("llama", "mistral", "ministral", "qwen2", "qwen3", "phi3", "gemma", "starcoder2", "olmo", "glm",
                   "helium", "nemotron", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe")
    branch_modules = {"attn": ("input_layernorm", "self_attn"), "mlp": ("post_attention_layernorm", "mlp")}
    branch_core = {"attn": "self_attn", "mlp": "mlp"}
    #: width pruning: separate q/k/v/o and gate/up/down Linears with a per-head layout, checked for these
    #: families only (Phi-3's fused projections and the MoE experts served here are refused)
    width_modules = WidthModules("self_attn", "q_proj", "k_proj", "v_proj", "o_proj", "mlp", "gate_proj", "up_proj",
                                 "down_proj", model_types=("llama", "mistral", "qwen2", "qwen3", "gemma"),
                                 # Llama's config has both flags; Mistral and Qwen2 have neither, Qwen3 and Gemma
                                 # only attention_bias (no MLP bias): those cannot carry FLAP's compensation
                                 output_biases=(("llama", "attention_bias", "mlp_bias"),))
    #: the model types served here whose forward is Llama's own for the same weights and config (what
    #: `--format nemotron-nas` needs); the others compute differently, some with Llama's weight layout
    llama_types: ClassVar[frozenset[str]] = frozenset({"llama", "mistral"})
    #: how those with Llama's weight layout differ, for the refusal
    not_llama: ClassVar[dict[str, str]] = {
        "helium": "interleaved rotary embeddings (Llama rotates the two halves of each head instead)",
        "gemma": "(1 + weight) RMSNorms and embeddings scaled by sqrt(hidden_size)",
    }

    def llama_difference(self):
        family = family_type(self.config)
        if family in self.llama_types:  # sliding windows are the exporter's check: they show in the config
            return None
        return self.not_llama.get(family) or super().llama_difference()

    def branch(self, layer, kind, h, kwargs):
        mod = self.layers()[layer]
        if kind == "attn":
            return mod.self_attn(hidden_states=mod.input_layernorm(h), **kwargs)[0]
        out = mod.mlp(mod.post_attention_layernorm(h))
        return out[0] if isinstance(out, tuple) else out  # some MoE blocks also return router logits


# -- Llama's own layout, which `--format nemotron-nas` (DeciLM) writes and checks other models against ----
#: the transformers class (module, name) whose weights and arithmetic DeciLM's kept blocks reproduce
LLAMA_CLASS = ("transformers.models.llama.modeling_llama", "LlamaForCausalLM")
#: where the decoder layers are, and every weight outside them
LLAMA_LAYERS = "model.layers"
LLAMA_TOP = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")


def llama_layer_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every tensor of one full Llama decoder layer (what DeciLM builds for a layer with both blocks)."""
    h, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    shapes = {"input_layernorm.weight": (h,), "self_attn.q_proj.weight": (q, h), "self_attn.k_proj.weight": (kv, h),
              "self_attn.v_proj.weight": (kv, h), "self_attn.o_proj.weight": (h, q),
              "post_attention_layernorm.weight": (h,), "mlp.gate_proj.weight": (inter, h),
              "mlp.up_proj.weight": (inter, h), "mlp.down_proj.weight": (h, inter)}
    if getattr(config, "attention_bias", False):
        shapes.update({"self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,), "self_attn.v_proj.bias": (kv,),
                       "self_attn.o_proj.bias": (h,)})
    if getattr(config, "mlp_bias", False):
        shapes.update({"mlp.gate_proj.bias": (inter,), "mlp.up_proj.bias": (inter,), "mlp.down_proj.bias": (h,)})
    return shapes

