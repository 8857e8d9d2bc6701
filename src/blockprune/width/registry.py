"""The width scores: one registry, one entry per score, each registered by the module that computes it
(`scores.py`: llm-bip, local, magnitude; `wanda_sp.py`, `flap.py`, `taylor.py`: the published baselines).

A score turns a model, calibration windows and the layers to prune into every unit's score
(`Scoring`); it also says how `--allocation global` ranks its units and whether the narrowed model
gets FLAP's bias compensation. `prune_width` reads only this."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..data import Windows
from ..registry import Registry
from ..view import BlockView


@dataclass
class Scoring:
    """What a score computed: per layer its `LayerScores`, and what else the pruning needs."""

    scores: dict[int, Any]  # layer -> LayerScores
    tokens: int = 0  # calibration tokens behind the scores (0: no data used)
    #: per layer, the calibration mean of each input channel of the output projection ("o") and of the
    #: down projection ("down"), float64: what bias compensation folds into the output biases
    means: dict[int, dict[str, torch.Tensor]] | None = None
    #: deterministic figures of the scoring pass for the plan (gradient memory, ...)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WidthScore:
    name: str
    #: (view, windows or None, layers, batch size) -> Scoring
    compute: Callable[[BlockView, Windows | None, list[int], int], Scoring]
    needs_data: bool = True
    #: `--allocation global`: "per-param" ranks units by score per parameter freed (a greedy knapsack);
    #: "score" ranks by score alone, each unit's parameters only counting towards the target (FLAP's
    #: adaptive structure, LLM-Pruner's global pruning)
    rank: str = "per-param"
    #: how an attention unit of several query heads under `--gqa heads` combines its heads' scores
    #: ("sum": removing them removes all their outputs; "mean": FLAP's head score is a mean over channels)
    reduce: str = "sum"
    #: the narrowed model's o/down projections get FLAP's bias compensation
    compensate: bool = False
    #: allocate as a compensated score does (the bias entries compensation would create freed on top of
    #: the target) but add no biases: the same units as the compensated score, for measuring what the
    #: compensation alone does (`flap-nobias`); the removal then exceeds the target by those entries
    reserve_biases: bool = False
    #: with `--allocation uniform`, score and prune the layers one after the other, each on the outputs of
    #: the already-pruned earlier ones (sequential.py): (adapter, width modules, layer, its input moments,
    #: calibration windows) -> that layer's LayerScores (the official Wanda-sp's order)
    sequential: Callable | None = None
    #: the score backpropagates the calibration loss (its memory: gradients and autograd's activations,
    #: which `blockprune estimate` counts)
    gradients: bool = False
    #: its gradients carry the diagonal Fisher too: one backward pass per window, two float32 accumulators
    #: (width.taylor.held_bytes)
    fisher: bool = False
    #: the matrices whose spectral norm (float64 SVD) the score takes in each pruned layer, by their shapes:
    #: (hidden, heads, head_dim, intermediate) -> [(rows, cols), ...]; `blockprune estimate` times them
    #: (an 8B model's MLP norms take longer than its forward passes on a CPU)
    matrix_norms: Callable[[int, int, int, int], list[tuple[int, int]]] | None = None


#: every width score, by name (`blockprune.registry`: one registration per name, in registration order)
SCORES: Registry[WidthScore] = Registry("width score")
register = SCORES.register
unregister = SCORES.unregister
get = SCORES.get
