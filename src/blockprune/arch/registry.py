"""Adapter registry: `config.model_type` -> the adapter class that knows that family (an adapter is
registered under each of its `model_types`)."""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from ..registry import Registry
from .base import Adapter, WidthModules

#: every adapter class, by model type (`blockprune.registry`: one registration per name)
ADAPTERS: Registry[type[Adapter]] = Registry("model type", names=lambda cls: cls.model_types)
register = ADAPTERS.register
unregister = ADAPTERS.unregister
get = ADAPTERS.get


def supported() -> list[str]:
    return sorted(ADAPTERS)


def width_families() -> dict[type[Adapter], WidthModules]:
    """Every registered adapter that supports width pruning -> its `width_modules`."""
    return {cls: cls.width_modules for cls in ADAPTERS.values() if cls.width_modules is not None}


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(model.config, "model_type", None)
    base_type = getattr(model.config, "blockprune", {}).get("base_model_type") if hasattr(model.config, "blockprune") else None
    if (base_type or model_type) not in ADAPTERS:
        raise UserError(
            f"unsupported architecture '{model_type}'; supported: {', '.join(supported())}. "
            f"To add one, write a small Adapter subclass in blockprune/arch/ (see arch/base.py) and register it")
    return ADAPTERS[base_type or model_type](model)
