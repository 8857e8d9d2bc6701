"""Pruning methods as plug-ins: each module of this package registers one or more `Method`s (registry.py);
every module is imported here, so a new method is one new file and its `register(...)` line."""
import importlib
import pkgutil

from .registry import METHODS, Job, Method, MethodDefaults, get, register, unregister

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")

__all__ = ["METHODS", "Job", "Method", "MethodDefaults", "get", "register", "unregister"]
