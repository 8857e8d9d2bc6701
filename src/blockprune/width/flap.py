"""FLAP: fluctuation-based adaptive structured pruning (An et al., AAAI 2024; CASIA-IVA-Lab/FLAP,
lib/prune.py `prune_flap` with its defaults `--metrics WIFV --structure AL-AM`, statistics from
lib/layerwrapper.py `BiasGPT`, compensation from `compress`).

Scores, per pruned layer, from one pass of the dense model over the calibration windows:
- fluctuation metric (WIFV) of input channel j of a Linear W (out x in): f_j = Var_t(x_j) * sum_i W[i, j]^2,
  the sample variance of the channel over all calibration tokens times the squared norm of its column;
- output projection: m_c = f_c^2 per channel (the official code squares the attention metric), standardised
  over the layer's channels, z = (m - mean(m)) / std(m); a head's score is the mean of its head_dim z's;
  a KV group's (`--gqa groups`) the mean of its heads' (a mean over all its channels);
- down projection: z = the standardised f over the layer's channels.

Standardising per layer puts every layer's heads and channels on one scale, so `--allocation global`
(FLAP's adaptive structure, AL-AM) ranks all units by score alone, lowest first, each unit's parameters
counting towards the target: FLAP's per-head weight 512/3 (a 128-dim head of a 4096-wide multi-head
model frees 4 * 4096 * 128 parameters, a channel 3 * 4096) is exactly this ratio of parameters, which
here is computed for this model's head size and grouped-query layout (a KV group frees its query heads'
q/o and its own k/v). `--allocation uniform` is FLAP's UL-UM.

After slicing, bias compensation (`bias.py`) adds the removed channels' mean contribution to the
output biases of o_proj and down_proj. `flap-nobias` is the same selection without it (FLAP's ablation):
it allocates as `flap` does, with the biases `flap` would create freed on top of the target, so it keeps
exactly `flap`'s units and its removal is `flap`'s plus those bias entries."""
from __future__ import annotations

import torch

from ..data import Windows
from ..view import BlockView
from .modules import geometry, modules_for
from .registry import Scoring, WidthScore, register
from .scores import LayerScores
from .stats import input_moments


def fluctuation(variance: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """WIFV of each input channel of `w` (out x in): Var(x_j) * ||W[:, j]||^2."""
    return variance.double() * w.detach().double().pow(2).sum(dim=0)


def standardise(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over all entries (std with n - 1; a constant x maps to zeros)."""
    x = x.double()
    if x.numel() < 2:
        return torch.zeros_like(x)
    std = x.std()
    return (x - x.mean()) / std if std > 0 else torch.zeros_like(x)


def head_scores(variance: torch.Tensor, w_o: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Each head's score: the mean over its channels of the standardised squared fluctuation metric."""
    return standardise(fluctuation(variance, w_o).pow(2)).reshape(-1, head_dim).mean(dim=1)


def channel_scores(variance: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    return standardise(fluctuation(variance, w_down))


def compute(view: BlockView, windows: Windows, layers: list[int], batch_size: int) -> Scoring:
    adapter = view.adapter
    spec = modules_for(adapter)
    moments, tokens = input_moments(view, windows, layers, batch_size)
    out, means = {}, {}
    for i in layers:
        geo = geometry(adapter, spec, i)
        layer = adapter.layers()[i]
        heads = groups = channels = None
        means[i] = {k: m.mean for k, m in moments[i].items()}
        if geo.heads is not None:
            w_o = layer.get_submodule(spec.attn).get_submodule(spec.o).weight
            heads = head_scores(moments[i]["o"].variance, w_o, geo.head_dim)
            groups = heads.reshape(geo.kv, geo.group_size).mean(dim=1)
        if geo.channels is not None:
            down = layer.get_submodule(spec.mlp).get_submodule(spec.down)
            channels = channel_scores(moments[i]["down"].variance, down.weight)
        out[i] = LayerScores(heads, groups, channels)
    return Scoring(out, tokens, means=means)


register(WidthScore("flap", compute, rank="score", reduce="mean", compensate=True))
register(WidthScore("flap-nobias", compute, rank="score", reduce="mean", reserve_biases=True))
