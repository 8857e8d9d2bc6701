"""Model-family adapters. Importing this package imports every module of it, so registers every family."""
from ..registry import import_all
from ..units import KINDS
from .base import Adapter, WidthModules
from .registry import ADAPTERS, adapter_for, get, register, supported, unregister, width_families

import_all(__name__, __path__)

__all__ = ["ADAPTERS", "Adapter", "KINDS", "WidthModules", "adapter_for", "get", "register", "supported",
           "unregister", "width_families"]
