"""Unit names, in one place: what a plan removes and what a search ranks.

A block is one residual branch of one decoder layer, `attn.<i>` or `mlp.<i>`; a whole layer is
`layer.<i>`, which stands for its two blocks. Layer indices are the base model's, never renumbered.
Execution order runs attn.0, mlp.0, attn.1, ... (a block's position is `2 * layer + kind`).

(`search.greedy.Unit` is a search candidate: a name from here with its blocks and parameter count;
`search.candidate_units()` lists a search's candidates.)"""
from __future__ import annotations

#: a layer's two residual branches, in the order they run
KINDS = ("attn", "mlp")
LAYER = "layer"


def unit_name(kind: str, layer: int) -> str:
    """`("attn", 3)` -> `attn.3`; kind is a block kind or "layer"."""
    return f"{kind}.{layer}"


def parse_unit(name: str) -> tuple[str, int]:
    """`attn.3` -> ("attn", 3); `layer.3` -> ("layer", 3)."""
    kind, _, layer = name.partition(".")
    return kind, int(layer)


def layer_blocks(layer: int) -> list[str]:
    """A layer's block names in execution order: 3 -> [`attn.3`, `mlp.3`]."""
    return [unit_name(kind, layer) for kind in KINDS]


def expand(unit: str) -> list[str]:
    """A unit's block names: `layer.3` -> [`attn.3`, `mlp.3`], a block -> itself."""
    kind, layer = parse_unit(unit)
    return layer_blocks(layer) if kind == LAYER else [unit]


def block_order(name: str) -> tuple[int, int]:
    """A block's sort key in execution order: `attn.3` -> (3, 0), `mlp.3` -> (3, 1)."""
    kind, layer = parse_unit(name)
    return layer, KINDS.index(kind)


def block_index(name: str) -> int:
    """A block's position in execution order: `attn.3` -> 6, `mlp.3` -> 7."""
    layer, k = block_order(name)
    return 2 * layer + k
