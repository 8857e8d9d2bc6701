# Written by blockprune: the base family's config, under a model type of its own so that a loader
# without trust_remote_code refuses this checkpoint instead of reading it as the dense model.
from {base_config_module} import {base_config_class} as _BaseConfig


class BlockPrunedConfig(_BaseConfig):
    model_type = "{model_type}"

    def removed_modules(self) -> dict:
        """Decoder submodule path -> what replaces it ("identity", "zero", "zero_tuple")."""
        return self.blockprune["skip"]
