"""SmolLM3: Llama-shaped, but some layers use no rotary embedding (NoPE), chosen by
`config.no_rope_layers[layer_idx]` when the layer is built. Dropping whole layers must carry each kept
layer's choice into the shortened config, or the reloaded model would give it its new index's."""
from __future__ import annotations

from .llama import LlamaAdapter
from .registry import register


@register
class SmolLM3Adapter(LlamaAdapter):
    model_types = ("smollm3",)

    def renumber_layer(self, new_index: int) -> None:
        super().renumber_layer(new_index)
        self.config.no_rope_layers = [int(layer.self_attn.use_rope) for layer in self.layers()]

    def llama_difference(self):
        nope = [i for i, rope in enumerate(self.config.no_rope_layers) if not rope]
        if nope:
            return f"layers without rotary embeddings (NoPE: layers {nope}), where every Llama layer has them"
        return None
