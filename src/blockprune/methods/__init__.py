"""Pruning methods as plug-ins: each module registers one `Method`; all write the same plan."""
from .registry import METHODS, Job, Method, get, register
from . import blockpruner, llm_bip, oneshot, refined, relative_magnitude, shortgpt  # noqa: F401,E402  (register)

__all__ = ["METHODS", "Job", "Method", "get", "register"]
