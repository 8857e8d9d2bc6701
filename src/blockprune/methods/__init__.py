"""Pruning methods as plug-ins: each module of this package registers one or more `Method`s (registry.py);
every module is imported here, so a new method is one new file and its `register(...)` line."""
from ..registry import import_all
from .registry import METHODS, Job, Method, MethodDefaults, get, register, unregister

import_all(__name__, __path__)

__all__ = ["METHODS", "Job", "Method", "MethodDefaults", "get", "register", "unregister"]
