"""Layer-by-layer width pruning, the order of the official Wanda-sp (CASIA-IVA-Lab/FLAP lib/prune.py
`prune_wanda_sp`): each pruned layer is scored on the inputs that went through the already-pruned
earlier layers, and pruned before the next is scored.

Only for `--allocation uniform`, whose per-layer counts (how many attention units and channels each
layer removes) depend on the parameter target and the layers' shapes, not on the scores: they are
fixed first, then each layer's lowest-scoring units go. The calibration windows' hidden states are kept
at the current layer boundary (windows x seqlen x hidden floats), so the whole run costs about two
forward passes: each pruned layer runs once dense (statistics) and once pruned (its output)."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..arch import Adapter
from ..data import Windows
from ..view import BlockView
from .allocation import Keep, LayerUnits, _keep, _uniform, layer_units
from .modules import WidthModules, geometry, modules_for
from .scores import LayerScores
from .slicing import narrow_layer
from .stats import Collector, Moments

#: (adapter, width modules, layer, that layer's input moments, calibration windows) -> its scores
LayerScorer = Callable[[Adapter, WidthModules, int, dict[str, Moments], int], LayerScores]


def uniform_counts(adapter: Adapter, layers: list[int], target: int, gqa: str) -> dict[int, tuple[int, int]]:
    """Per layer, (attention units, channels) that `--allocation uniform` removes for `target`."""
    spec = modules_for(adapter)
    units = {}
    for i in layers:
        g = geometry(adapter, spec, i)
        zeros = [None if n is None else torch.zeros(n, dtype=torch.float64) for n in (g.heads, g.kv, g.channels)]
        units[i] = layer_units(adapter, spec, i, LayerScores(*zeros), gqa)
    return _uniform(units, target)


@torch.no_grad()
def prune_sequential(view: BlockView, windows: Windows, layers: list[int], target: int, gqa: str,
                     score_layer: LayerScorer, batch_size: int = 1
                     ) -> tuple[nn.Module, dict[int, Keep], dict[int, LayerScores], dict[int, LayerUnits]]:
    """The narrowed copy, and per pruned layer what it keeps, its scores and its units."""
    counts = uniform_counts(view.adapter, layers, target, gqa)
    model = copy.deepcopy(view.model)
    pview = BlockView(model)
    adapter = pview.adapter
    spec = modules_for(adapter)
    preps = [pview.prepare(windows.ids[b:b + batch_size]) for b in range(0, len(windows), batch_size)]
    hidden = [p.hidden for p in preps]
    keep, scores, units = {}, {}, {}
    last = max(layers)
    for i in range(last + 1):
        blocks = (2 * i, 2 * i + 2)  # the layer's attention and MLP blocks, in execution order
        if i in counts:
            collector = Collector(pview, [i])
            try:
                for h, p in zip(hidden, preps):
                    pview.run(h, p, frozenset(), *blocks)
            finally:
                moments = collector.remove()[i]
            scores[i] = score_layer(adapter, spec, i, moments, len(windows))
            units[i] = layer_units(adapter, spec, i, scores[i], gqa)
            keep[i] = _keep(units[i], *counts[i])
            narrow_layer(adapter.layers()[i], spec, keep[i])
        if i < last:
            hidden = [pview.run(h, p, frozenset(), *blocks) for h, p in zip(hidden, preps)]
    return model, keep, scores, units
