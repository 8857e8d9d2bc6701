"""Wanda-sp: structured Wanda, the baseline of FLAP's repository (An et al., 2024; CASIA-IVA-Lab/FLAP,
lib/prune.py `prune_wanda_sp`, statistics from lib/layerwrapper.py `WrappedGPT`).

For a Linear `W` (out x in) and its input channel j over the calibration windows:

    s_j = mean_i |W[i, j]| * sqrt(sum over tokens of x_j^2 / windows)

(the official `scaler_row` is that sum of squares divided by the number of calibration samples). On the
output projection the input channels are the heads' outputs: a head's score is the sum of its
head_dim channels' scores; on the down projection they are the MLP channels, scored directly. A KV
group (`--gqa groups`) scores the sum of its query heads (the official code is for multi-head attention).

One difference from the official code, said in docs/width-baselines.md: there each layer's statistics
come from inputs that already went through the pruned earlier layers (it prunes layer by layer); here
all come from one pass of the dense model, as FLAP's own method does, which is what lets
`--allocation global` rank every layer's units together."""
from __future__ import annotations

import torch

from ..data import Windows
from ..view import BlockView
from .modules import modules_for
from .registry import Scoring, WidthScore, register
from .scores import LayerScores, _sub, geometry
from .stats import input_moments


def channel_scores(w: torch.Tensor, sq: torch.Tensor, samples: int) -> torch.Tensor:
    """Wanda-sp's score of every input channel of `w` (out x in): mean_i |W[i, j]| * sqrt(sq_j / samples)."""
    return w.detach().double().abs().mean(dim=0) * (sq.double() / samples).sqrt()


def head_scores(w_o: torch.Tensor, sq: torch.Tensor, samples: int, head_dim: int) -> torch.Tensor:
    """Each head's score: the sum of its channels' scores on the output projection."""
    return channel_scores(w_o, sq, samples).reshape(-1, head_dim).sum(dim=1)


def compute(view: BlockView, windows: Windows, layers: list[int], batch_size: int) -> Scoring:
    adapter = view.adapter
    spec = modules_for(adapter)
    moments, tokens = input_moments(view, windows, layers, batch_size)
    samples = len(windows)
    out = {}
    for i in layers:
        geo = geometry(adapter, spec, i)
        layer = adapter.layers()[i]
        heads = groups = channels = None
        if geo.heads is not None:
            w_o = _sub(_sub(layer, spec.attn), spec.o).weight
            heads = head_scores(w_o, moments[i]["o"].sq, samples, geo.head_dim)
            groups = heads.reshape(geo.kv, geo.group_size).sum(dim=1)
        if geo.channels is not None:
            channels = channel_scores(_sub(_sub(layer, spec.mlp), spec.down).weight, moments[i]["down"].sq, samples)
        out[i] = LayerScores(heads, groups, channels)
    return Scoring(out, tokens)


register(WidthScore("wanda-sp", compute))
