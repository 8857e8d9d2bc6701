"""Wanda-sp: structured Wanda, the baseline of FLAP's repository (An et al., 2024; CASIA-IVA-Lab/FLAP,
lib/prune.py `prune_wanda_sp`, statistics from lib/layerwrapper.py `WrappedGPT`).

For a Linear `W` (out x in) and its input channel j over the calibration windows:

    s_j = mean_i |W[i, j]| * sqrt(sum over tokens of x_j^2 / windows)

(the official `scaler_row` is that sum of squares divided by the number of calibration samples). On the
output projection the input channels are the heads' outputs: a head's score is the sum of its
head_dim channels' scores; on the down projection they are the MLP channels, scored directly. A KV
group (`--gqa groups`) scores the sum of its query heads (the official code is for multi-head attention).

As in the official code, under `--allocation uniform` the layers are scored and pruned one after the
other, each on inputs that went through the already-pruned earlier layers (`sequential.py`). Under
`--allocation global` (which the official code does not have) every layer's statistics come from one
pass of the dense model, as FLAP's own method does, so that all units can be ranked together."""
from __future__ import annotations

import torch

from ..arch import Adapter, WidthModules
from ..data import Windows
from ..view import BlockView
from .modules import geometry, modules_for
from .registry import Scoring, WidthScore, register
from .scores import LayerScores
from .stats import Moments, input_moments


def channel_scores(w: torch.Tensor, sq: torch.Tensor, samples: int) -> torch.Tensor:
    """Wanda-sp's score of every input channel of `w` (out x in): mean_i |W[i, j]| * sqrt(sq_j / samples)."""
    return w.detach().double().abs().mean(dim=0) * (sq.double() / samples).sqrt()


def head_scores(w_o: torch.Tensor, sq: torch.Tensor, samples: int, head_dim: int) -> torch.Tensor:
    """Each head's score: the sum of its channels' scores on the output projection."""
    return channel_scores(w_o, sq, samples).reshape(-1, head_dim).sum(dim=1)


def layer_scores(adapter: Adapter, spec: WidthModules, i: int, moments: dict[str, Moments],
                 samples: int) -> LayerScores:
    """Layer i's scores from its projections' input moments over `samples` calibration windows."""
    geo = geometry(adapter, spec, i)
    layer = adapter.layers()[i]
    heads = groups = channels = None
    if geo.heads is not None:
        w_o = layer.get_submodule(spec.attn).get_submodule(spec.o).weight
        heads = head_scores(w_o, moments["o"].sq, samples, geo.head_dim)
        groups = heads.reshape(geo.kv, geo.group_size).sum(dim=1)
    if geo.channels is not None:
        w_down = layer.get_submodule(spec.mlp).get_submodule(spec.down).weight
        channels = channel_scores(w_down, moments["down"].sq, samples)
    return LayerScores(heads, groups, channels)


def compute(view: BlockView, windows: Windows, layers: list[int], batch_size: int) -> Scoring:
    """All layers' scores from one pass of the dense model (`--allocation global`)."""
    spec = modules_for(view.adapter)
    moments, tokens = input_moments(view, windows, layers, batch_size)
    return Scoring({i: layer_scores(view.adapter, spec, i, moments[i], len(windows)) for i in layers}, tokens)


register(WidthScore("wanda-sp", compute, sequential=layer_scores))
