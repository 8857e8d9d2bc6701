"""Mixture-of-experts families beyond the Llama-shaped ones that `LlamaAdapter` serves (Mixtral,
Qwen-MoE, OLMoE): the sparse MLP, router included, is one MLP block.

gpt-oss: its MoE block returns (hidden states, router scores), so a removed MLP must return a pair too;
attention sinks and alternating sliding/full layers live inside the stock attention and masks."""
from __future__ import annotations

from .llama import LlamaAdapter
from .registry import register


@register
class GptOssAdapter(LlamaAdapter):
    model_types = ("gpt_oss",)

    def removed_core_output(self, kind: str) -> str:
        return "zero_tuple"
