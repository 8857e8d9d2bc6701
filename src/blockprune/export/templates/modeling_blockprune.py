# Written by blockprune: the base family's model with some residual branches removed.
# `config.removed_modules()` maps each decoder layer's submodule path to what replaces it: "identity"
# for the norm that fed a removed branch, "zero" / "zero_tuple" for the removed module itself. The
# removed weights are absent from the checkpoint, and layers without attention hold no KV cache.
from {model_module} import {model_class} as _Base

from .blockprune_removed import remove_modules
from .{config_file} import {config_class}


class {model_name}(_Base):
    config_class = {config_class}

    def __init__(self, config):
        super().__init__(config)
        remove_modules(self, config.removed_modules())
