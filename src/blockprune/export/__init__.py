"""Export: a plan and its base model become a checkpoint with the removed weights physically absent.

Formats:
- `vanilla`: only whole layers removed -> the same family with fewer layers, indices renumbered.
- `remote-code`: blocks removed inside layers -> the base family's weights minus the removed ones,
  and a modeling file shipped in the checkpoint (`trust_remote_code=True`).
- `auto`: vanilla when it can express the plan, else remote-code.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .checkpoint import FORMATS, export, load

__all__ = ["FORMATS", "export", "load", "choose_format"]


def choose_format(removed_blocks: frozenset[str]) -> str:
    from .checkpoint import whole_layers
    return "vanilla" if whole_layers(removed_blocks) is not None else "remote-code"
