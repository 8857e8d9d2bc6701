"""Adapter registry: `config.model_type` -> the adapter class that knows that family."""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .base import Adapter, WidthModules

_ADAPTERS: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    for t in cls.model_types:
        _ADAPTERS[t] = cls
    return cls


def unregister(cls: type[Adapter]) -> None:
    """Remove an adapter registered at runtime (a test's or a plug-in's) from every model type it serves."""
    for t in [t for t, c in _ADAPTERS.items() if c is cls]:
        del _ADAPTERS[t]


def supported() -> list[str]:
    return sorted(_ADAPTERS)


def width_families() -> dict[type[Adapter], WidthModules]:
    """Every registered adapter that supports width pruning -> its `width_modules`."""
    return {cls: cls.width_modules for cls in _ADAPTERS.values() if cls.width_modules is not None}


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(model.config, "model_type", None)
    base_type = getattr(model.config, "blockprune", {}).get("base_model_type") if hasattr(model.config, "blockprune") else None
    cls = _ADAPTERS.get(base_type or model_type)
    if cls is None:
        raise UserError(
            f"unsupported architecture '{model_type}'; supported: {', '.join(supported())}. "
            f"To add one, write a small Adapter subclass in blockprune/arch/ (see arch/base.py) and register it")
    return cls(model)
