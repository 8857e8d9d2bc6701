# Written by blockprune: the base family's model with attention heads and MLP channels removed, with
# widths that differ between layers, and possibly residual branches removed by depth pruning before.
# `config.blockprune["widths"]` lists, per decoder layer, the query heads, KV heads and intermediate
# channels it keeps (null: the branch is absent or left as it is); the layers' Linear modules are
# resized to those widths before the checkpoint's weights load. `config.blockprune["skip"]` (when
# present) maps a layer's submodule path to what replaces a removed branch: "identity" for its norm,
# "zero" / "zero_tuple" for the module itself.
from torch import nn

from {model_module} import {model_class} as _Base

from .blockprune_removed import remove_modules
from .configuration_blockprune_width import WidthPrunedConfig


def _resize(parent, name, in_features, out_features):
    old = getattr(parent, name)
    setattr(parent, name, nn.Linear(in_features, out_features, bias=old.bias is not None,
                                    device=old.weight.device, dtype=old.weight.dtype))


class WidthPrunedForCausalLM(_Base):
    config_class = WidthPrunedConfig

    def __init__(self, config):
        super().__init__(config)
        info = config.blockprune
        remove_modules(self, info.get("skip") or {})
        names = info["width_modules"]
        hidden = config.hidden_size
        for layer, width in zip(self.get_submodule(info["layers_path"]), info["widths"]):
            if width["heads"] is not None:
                attn = layer.get_submodule(names["attn"])
                q, kv = width["heads"] * attn.head_dim, width["kv"] * attn.head_dim
                _resize(attn, names["q"], hidden, q)
                _resize(attn, names["k"], hidden, kv)
                _resize(attn, names["v"], hidden, kv)
                _resize(attn, names["o"], q, hidden)
                attn.num_key_value_groups = width["heads"] // width["kv"]
            if width["channels"] is not None:
                mlp = layer.get_submodule(names["mlp"])
                _resize(mlp, names["gate"], hidden, width["channels"])
                _resize(mlp, names["up"], hidden, width["channels"])
                _resize(mlp, names["down"], width["channels"], hidden)
                if hasattr(mlp, "intermediate_size"):
                    mlp.intermediate_size = width["channels"]
