# Written by blockprune: a Llama config in the Nemotron-NAS / DeciLM layout (model_type "nemotron-nas"),
# which vLLM serves natively as DeciLMForCausalLM. `block_configs` holds one entry per decoder layer:
#   {"attention": {"no_op", "replace_with_linear", "n_heads_in_group"},
#    "ffn": {"no_op", "replace_with_linear", "ffn_mult" or "intermediate_size"}}
# A no-op block has no weights (its norm included) and an attention no-op holds no KV cache.
from types import SimpleNamespace

from transformers import LlamaConfig


def ffn_mult_to_intermediate_size(ffn_mult: float, hidden_size: int) -> int:
    """The DeciLM rule: two thirds of ffn_mult * hidden, rounded up to a multiple of 256."""
    size = int(2 * ffn_mult * hidden_size / 3)
    return size if size % 256 == 0 else size + 256 - size % 256


def _namespace(d):
    # attribute access (block.attention.no_op) is how vLLM reads block configs; keys absent from the
    # JSON stay absent, because vLLM tests hasattr(ffn, "ffn_mult") to pick the width rule
    return SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def _plain(ns):
    return {k: _plain(v) if isinstance(v, SimpleNamespace) else v for k, v in vars(ns).items()}


def _the_one(values, what):
    values = set(values)
    if len(values) > 1:
        raise ValueError(f"this modeling code needs one {what} across kept blocks, got {sorted(values)}")
    return values.pop() if values else None


def _intermediate_size(ffn, hidden_size: int) -> int:
    if getattr(ffn, "ffn_mult", None) is not None:
        return ffn_mult_to_intermediate_size(ffn.ffn_mult, hidden_size)
    return ffn.intermediate_size


class NemotronNasConfig(LlamaConfig):
    model_type = "nemotron-nas"

    # an explicit __init__, as remote-code configs have, works with transformers 4 and 5 alike
    def __init__(self, block_configs=None, **kwargs):
        blocks = [b if isinstance(b, SimpleNamespace) else _namespace(b) for b in block_configs or []]
        if any(getattr(b.attention, "replace_with_linear", False) or getattr(b.ffn, "replace_with_linear", False)
               for b in blocks):
            raise ValueError("this modeling code runs no-op and full blocks only, not replace_with_linear")
        super().__init__(**kwargs)
        self.block_configs = blocks
        # every kept block has one shape, so the Llama modules take it from the block configs
        group = _the_one((b.attention.n_heads_in_group for b in blocks if not b.attention.no_op), "n_heads_in_group")
        if group is not None:
            self.num_key_value_heads = self.num_attention_heads // group
        width = _the_one((_intermediate_size(b.ffn, self.hidden_size) for b in blocks if not b.ffn.no_op),
                         "FFN width")
        if width is not None:
            self.intermediate_size = width
        # transformers gives a "reuse" layer a cache slot that stores nothing: no-op attention, no KV
        self.kv_sharing_modes = ["reuse" if b.attention.no_op else None for b in blocks]

    def removed_modules(self) -> dict:
        """Decoder submodule path -> what replaces it, for each no-op block."""
        out = {}
        for i, b in enumerate(self.block_configs):
            if b.attention.no_op:
                out[f"model.layers.{i}.input_layernorm"] = "identity"
                out[f"model.layers.{i}.self_attn"] = "zero_tuple"
            if b.ffn.no_op:
                out[f"model.layers.{i}.post_attention_layernorm"] = "identity"
                out[f"model.layers.{i}.mlp"] = "zero"
        return out

    def to_dict(self):
        d = super().to_dict()
        d["block_configs"] = [_plain(b) for b in self.block_configs]
        d.pop("kv_sharing_modes", None)  # derived from block_configs on load
        return d
