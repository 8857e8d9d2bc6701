"""Which heads and channels to remove for a target share of the model's parameters.

Units: an attention unit is a whole KV group with its query heads (`gqa="groups"`), or one query
head from every KV group (`gqa="heads"`: each group ranks its own heads and unit k takes the k-th
lowest of each); either way every layer keeps `heads = kv * r'` with r' heads per group, a valid
grouped-query shape. An MLP unit is one intermediate channel. Each layer always keeps at least one
attention unit and one channel.

Allocations:
- `uniform`: every pruned layer removes the same share of its attention units and of its channels.
  With few KV groups the attention share is coarse (SmolLM2 has 3), so: the share rho = target /
  (prunable parameters in the pruned layers); attention units removed per layer = round(rho * units)
  (lowered while attention alone would pass the target); then the largest per-layer channel share
  that stays within the target. Within a layer the lowest-scoring units go.
- `global`: all units of all pruned layers in one ranking by score per parameter (a greedy knapsack:
  each unit's score bounds the output error its removal causes, its cost is what it frees), removed
  in that order while the removed parameters stay within the target. A score may instead rank by score
  alone (`rank="score"`: FLAP's adaptive structure, LLM-Pruner's global pruning), a unit's parameters
  then only counting towards the target.

The target is a count of parameters; the result removes as many as possible without passing it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..arch import Adapter
from .modules import Geometry, WidthModules, geometry, modules_for
from .scores import LayerScores

ALLOCATIONS = ("uniform", "global")
GQA = ("groups", "heads")


@dataclass
class Keep:
    """What one layer keeps (None for a branch the layer does not have)."""

    heads: list[int] | None
    kv: list[int] | None
    channels: list[int] | None


@dataclass
class AttentionUnits:
    """A layer's attention units in removal order (lowest score first)."""

    order: list[tuple[float, list[int], list[int]]]  # (score, query heads, kv groups) per unit
    cost: int  # parameters one unit frees


@dataclass
class LayerUnits:
    geo: Geometry
    attn: AttentionUnits | None
    channel_order: list[int] = field(default_factory=list)  # channel indices, lowest score first
    channel_scores: list[float] = field(default_factory=list)
    channel_cost: int = 0


def _bias(lin: nn.Linear, n: int) -> int:
    return n if lin.bias is not None else 0


def _ascending(scores: torch.Tensor) -> list[int]:
    # stable: equal scores go in index order, so ties never depend on the sort implementation
    return sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))


def layer_units(adapter: Adapter, spec: WidthModules, layer: int, scores: LayerScores, gqa: str,
                reduce: str = "sum") -> LayerUnits:
    """A layer's units in removal order; under `gqa="heads"` a unit of one head per group scores the
    sum (or, with `reduce="mean"`, the mean) of its heads' scores."""
    geo = geometry(adapter, spec, layer)
    mod = adapter.layers()[layer]
    attn_units = None
    if geo.heads is not None:
        a = mod.get_submodule(spec.attn)
        q, k, v, o = (a.get_submodule(n) for n in (spec.q, spec.k, spec.v, spec.o))
        d, r = geo.head_dim, geo.group_size
        head_cost = q.in_features * d + _bias(q, d) + o.out_features * d
        kv_cost = k.in_features * d + _bias(k, d) + v.in_features * d + _bias(v, d)
        if gqa == "groups":
            order = [(float(scores.groups[g]), list(range(g * r, (g + 1) * r)), [g]) for g in _ascending(scores.groups)]
            cost = r * head_cost + kv_cost
        else:
            per_group = [[g * r + j for j in _ascending(scores.heads[g * r:(g + 1) * r])] for g in range(geo.kv)]
            order = []
            for rank in range(r):
                heads = sorted(hs[rank] for hs in per_group)
                total = sum(float(scores.heads[h]) for h in heads)
                order.append((total / len(heads) if reduce == "mean" else total, heads, []))
            cost = geo.kv * head_cost
        attn_units = AttentionUnits(order, cost)
    units = LayerUnits(geo, attn_units)
    if geo.channels is not None:
        m = mod.get_submodule(spec.mlp)
        gate, up, down = (m.get_submodule(n) for n in (spec.gate, spec.up, spec.down))
        units.channel_order = _ascending(scores.channels)
        units.channel_scores = [float(s) for s in scores.channels]
        units.channel_cost = gate.in_features + _bias(gate, 1) + up.in_features + _bias(up, 1) + down.out_features
    return units


def _keep(units: LayerUnits, attn_removed: int, channels_removed: int) -> Keep:
    geo = units.geo
    heads = kv = channels = None
    if units.attn is not None:
        gone_h = {h for _, hs, _ in units.attn.order[:attn_removed] for h in hs}
        gone_kv = {g for _, _, gs in units.attn.order[:attn_removed] for g in gs}
        heads = [h for h in range(geo.heads) if h not in gone_h]
        kv = [g for g in range(geo.kv) if g not in gone_kv]
    if geo.channels is not None:
        gone = set(units.channel_order[:channels_removed])
        channels = [j for j in range(geo.channels) if j not in gone]
    return Keep(heads, kv, channels)


def _uniform(units: dict[int, LayerUnits], target: int) -> dict[int, tuple[int, int]]:
    def n_attn(u: LayerUnits) -> int:
        return len(u.attn.order) if u.attn else 0

    def n_chan(u: LayerUnits) -> int:
        return len(u.channel_order)

    prunable = sum(n_attn(u) * (u.attn.cost if u.attn else 0) + n_chan(u) * u.channel_cost for u in units.values())
    rho = min(1.0, target / prunable) if prunable else 0.0
    attn = {i: min(max(n_attn(u) - 1, 0), round(rho * n_attn(u))) for i, u in units.items()}
    while sum(attn[i] * (u.attn.cost if u.attn else 0) for i, u in units.items()) > target:
        attn = {i: max(0, a - 1) for i, a in attn.items()}
    left = target - sum(attn[i] * (u.attn.cost if u.attn else 0) for i, u in units.items())

    def channels(share: float) -> dict[int, int]:
        return {i: min(max(n_chan(u) - 1, 0), int(share * n_chan(u))) for i, u in units.items()}

    def cost(c: dict[int, int]) -> int:
        return sum(c[i] * u.channel_cost for i, u in units.items())

    lo, hi = 0.0, 1.0  # the largest channel share within the target (cost is monotone in the share)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(channels(mid)) <= left else (lo, mid)
    chan = channels(lo)
    return {i: (attn[i], chan[i]) for i in units}


def _global(units: dict[int, LayerUnits], target: int, rank: str = "per-param") -> dict[int, tuple[int, int]]:
    def key(score: float, cost: int) -> float:
        return score / cost if rank == "per-param" else score

    ranked = []
    for i, u in units.items():
        if u.attn:
            ranked += [(key(s, u.attn.cost), i, 0, k, u.attn.cost) for k, (s, _, _) in enumerate(u.attn.order)]
        ranked += [(key(u.channel_scores[j], u.channel_cost), i, 1, k, u.channel_cost)
                   for k, j in enumerate(u.channel_order)]
    ranked.sort()
    removed = {i: [0, 0] for i in units}
    total = 0
    for _, i, kind, k, cost in ranked:
        limit = (len(units[i].attn.order) if kind == 0 else len(units[i].channel_order)) - 1
        # a layer's units go in their own order (k == removed so far) and one always stays
        if k != removed[i][kind] or k >= limit or total + cost > target:
            continue
        removed[i][kind] += 1
        total += cost
    return {i: (a, c) for i, (a, c) in removed.items()}


def allocate(adapter: Adapter, scores: dict[int, LayerScores], target: int, allocation: str = "uniform",
             gqa: str = "groups", rank: str = "per-param",
             reduce: str = "sum") -> tuple[dict[int, Keep], dict[int, LayerUnits]]:
    """Per pruned layer, what it keeps, removing at most `target` parameters in all (`rank` and
    `reduce`: see `_global` and `layer_units`)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; choose one of {ALLOCATIONS}")
    if gqa not in GQA:
        raise ValueError(f"unknown gqa mode {gqa!r}; choose one of {GQA}")
    spec = modules_for(adapter)
    if rank not in ("per-param", "score"):
        raise ValueError(f"unknown rank {rank!r}")
    units = {i: layer_units(adapter, spec, i, s, gqa, reduce) for i, s in sorted(scores.items())}
    counts = _uniform(units, target) if allocation == "uniform" else _global(units, target, rank)
    return {i: _keep(units[i], *counts[i]) for i in units}, units


def removed_params(units: dict[int, LayerUnits], keep: dict[int, Keep]) -> int:
    total = 0
    for i, u in units.items():
        k = keep[i]
        if u.attn is not None:
            heads_per_unit = len(u.attn.order[0][1])  # a whole group's heads, or one head of every group
            total += (u.geo.heads - len(k.heads)) // heads_per_unit * u.attn.cost
        if k.channels is not None:
            total += (u.geo.channels - len(k.channels)) * u.channel_cost
    return total
