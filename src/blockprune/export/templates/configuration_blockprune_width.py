# Written by blockprune: the base family's config, under a model type of its own so that a loader
# without trust_remote_code refuses this checkpoint instead of reading it as the dense model.
from {config_module} import {config_class} as _BaseConfig


class WidthPrunedConfig(_BaseConfig):
    model_type = "{model_type}"
