"""Export: a plan and its base model become a checkpoint with the removed weights physically absent.

Formats:
- `vanilla`: only whole layers removed -> the same family with fewer layers, indices renumbered.
- `remote-code`: blocks removed inside layers -> the base family's weights minus the removed ones,
  and a modeling file shipped in the checkpoint (`trust_remote_code=True`).
- `nemotron-nas`: Llama-layout models -> the DeciLM / Nemotron-NAS layout (`block_configs` with no-op
  attention and FFN) that vLLM serves natively, plus a modeling file for transformers.
- `auto`: vanilla when it can express the plan (no removal at all included), else remote-code.

A width-pruned remote-code model (per-layer widths in `config.blockprune["widths"]`) is written by the
width exporter (`blockprune.width.export`), its new removals merged with any earlier ones: `auto` and
`remote-code` give that, `vanilla` and `nemotron-nas` are refused (they cannot express per-layer widths).

A depth-pruned checkpoint loaded with its shipped code (remote-code or nemotron-nas) can be pruned and
exported again: its earlier removals (`config.blockprune["removed"]`) join the new ones in every format
(`vanilla` when together they are whole layers, `auto` choosing it then), the code written imports the
transformers classes beneath the loaded ones, and `config.blockprune` keeps the dense original's base
model, parameter count and family, with the record it was loaded with under "pruned_from".
"""
from __future__ import annotations

from .checkpoint import FORMATS, export, load, whole_layers

__all__ = ["FORMATS", "export", "load", "choose_format"]


def choose_format(removed_blocks: frozenset[str]) -> str:
    return "vanilla" if whole_layers(removed_blocks) is not None else "remote-code"
