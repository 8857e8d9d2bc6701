"""Model-family adapters. Importing this package registers every family."""
from . import falcon, gpt2, gpt_neox, granite, llama, moe, opt, parallel, sandwich, smollm3  # noqa: F401
from ..units import KINDS
from .base import Adapter, WidthModules
from .registry import adapter_for, register, supported, unregister, width_families

__all__ = ["Adapter", "KINDS", "WidthModules", "adapter_for", "register", "supported", "unregister",
           "width_families"]
