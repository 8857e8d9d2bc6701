"""Importance of each attention head and MLP channel: LLM-BIP and the two baselines.

Notation for one decoder layer (SwiGLU MLP, grouped-query attention with `r` query heads per KV group):
- `o_h` (T x d): head h's output, i.e. its slice of the input of the output projection, over all T
  calibration tokens; `W_o[:, h]` (hidden x d): the output projection's columns that read it.
- `a_j` (T): channel j's intermediate activation act(gate_j(x)) * up_j(x), the input of the down
  projection; `W_down[:, j]` (hidden): the column that writes it back.

Scores (`SCORES`), all "bigger = more important":
- `llm-bip` (Wu, 2024): s_F(j) = ||a_j||_2 * ||W_down[:, j]||_2 and
  s_H(h) = ||o_h||_F * ||W_o[:, h]||_2 * (1 + ||W_up||_2 * ||W_down||_2).
  Choices made here: matrix norms are spectral (`||W_o[:, h]||_2` is the Lipschitz constant of the
  head's output map, so ||o_h||_F * ||W_o[:, h]||_2 bounds the Frobenius norm of what removing the
  head takes out of the attention output); the propagation factor is the paper's Lipschitz bound of
  the residual path plus the following MLP, taken as ||W_up||_2 * ||W_down||_2: the gate projection
  does not enter it (SiLU's slope is at most ~1.1 and the gate acts as a soft switch on the up path),
  and the post-attention RMSNorm's gain is ignored. For SwiGLU this factor is a heuristic, not a
  rigorous bound (the MLP is a product of two linear maps). It is one number per layer, so it does not
  change which heads a layer ranks lowest; it matters when units compete across layers
  (`allocation="global"`), where heads of layers with a strong MLP are protected.
- `local` (Wanda/FLAP-style activation x weight): the same two products without the factor.
- `magnitude`: the L2 norm of every weight the unit owns: a head's q_proj rows and o_proj columns
  (+ bias entries), a channel's gate/up rows and down column; a KV group adds its k/v rows.

A KV group's score (for removal of whole groups) is the sum of its query heads' scores for the
activation-based scores (removing the group removes exactly those heads' outputs: the error bound
adds up), and the L2 norm of all its weights for `magnitude`.

Activation norms come from one forward pass of the dense model over the calibration windows, with
forward pre-hooks on the output and down projections; sums of squares are accumulated in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..arch import adapter_for
from ..data import Windows
from ..view import BlockView
from .modules import WidthModules, geometry, layer_parts, modules_for
from .stats import input_moments
from .registry import Scoring, WidthScore, register

#: the scores computed here (the published baselines register their own modules: see registry.py)
BUILTIN = ("llm-bip", "local", "magnitude")


@dataclass
class LayerScores:
    heads: torch.Tensor | None  # (heads,)
    groups: torch.Tensor | None  # (kv,)
    channels: torch.Tensor | None  # (channels,)


def widths(model: nn.Module) -> list[dict[str, int | None]]:
    """Per layer: the query heads, KV heads and channels it has (None for an absent branch)."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    out = []
    for i in range(len(adapter.layers())):
        g = geometry(adapter, spec, i)
        out.append({"heads": g.heads, "kv": g.kv, "channels": g.channels})
    return out


def head_dim(model: nn.Module) -> int:
    """The head dimension of the model's attention (the first layer that still has attention)."""
    adapter = adapter_for(model)
    spec = modules_for(adapter)
    return next(g.head_dim for g in (geometry(adapter, spec, i) for i in range(len(adapter.layers())))
                if g.head_dim is not None)


@dataclass
class Activations:
    """Per layer: sum over calibration tokens of each head's ||o_h||^2 and each channel's a_j^2."""

    heads: dict[int, torch.Tensor]
    channels: dict[int, torch.Tensor]
    tokens: int


def collect_activations(view: BlockView, windows: Windows, layers: list[int], batch_size: int = 1) -> Activations:
    """One forward pass of the (dense) model over `windows` (`stats.input_moments`): a head's ||o_h||^2 is
    the sum of its channels' squares at the output projection's input, a channel's a_j^2 its square at the
    down projection's."""
    moments, tokens = input_moments(view, windows, layers, batch_size)
    spec = modules_for(view.adapter)
    heads = {i: m["o"].sq.reshape(geometry(view.adapter, spec, i).heads, -1).sum(dim=1)
             for i, m in moments.items() if "o" in m}
    return Activations(heads, {i: m["down"].sq for i, m in moments.items() if "down" in m}, tokens)


# -- the scores proper: pure functions of activation sums and weights ---------------------------------
def spectral(w: torch.Tensor) -> float:
    """||w||_2, taken on the tall orientation: LAPACK's SVD of a wide row-major matrix (a down projection,
    hidden x intermediate) runs about 3x slower than of its transpose, and the norm is the same."""
    w = w.detach().double()
    return float(torch.linalg.matrix_norm(w.T if w.shape[0] < w.shape[1] else w, ord=2))


def head_blocks(w_o: torch.Tensor, head_dim: int) -> list[torch.Tensor]:
    """W_o[:, h] for every head h: the (hidden x head_dim) column blocks of the output projection."""
    return list(w_o.detach().double().split(head_dim, dim=1))


def activation_head_scores(head_sq: torch.Tensor, w_o: torch.Tensor, head_dim: int,
                           factor: float = 1.0) -> torch.Tensor:
    """||o_h||_F * ||W_o[:, h]||_2 * factor (factor = 1 + ||W_up|| ||W_down|| for LLM-BIP, 1 for local)."""
    norms = torch.tensor([spectral(b) for b in head_blocks(w_o, head_dim)], dtype=torch.float64)
    return head_sq.double().sqrt() * norms * factor


def activation_channel_scores(chan_sq: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """||a_j||_2 * ||W_down[:, j]||_2."""
    return chan_sq.double().sqrt() * w_down.detach().double().norm(dim=0).cpu()  # the sums are on the CPU


def propagation_factor(w_up: torch.Tensor, w_down: torch.Tensor) -> float:
    """1 + ||W_up||_2 ||W_down||_2: the residual path plus a Lipschitz bound of the following MLP."""
    return 1.0 + spectral(w_up) * spectral(w_down)


def _rows_sq(lin: nn.Linear, size: int) -> torch.Tensor:
    """Sum of squares of each consecutive group of `size` output rows (bias entries included)."""
    sq = lin.weight.detach().double().pow(2).sum(dim=1)
    if lin.bias is not None:
        sq = sq + lin.bias.detach().double().pow(2)
    return sq.reshape(-1, size).sum(dim=1)


def magnitude_scores(attn: nn.Module | None, mlp: nn.Module | None, spec: WidthModules,
                     geo: Geometry) -> LayerScores:
    heads = groups = channels = None
    if attn is not None:
        d = geo.head_dim
        o_sq = attn.get_submodule(spec.o).weight.detach().double().pow(2).sum(dim=0).reshape(-1, d).sum(dim=1)
        head_sq = _rows_sq(attn.get_submodule(spec.q), d) + o_sq
        kv_sq = _rows_sq(attn.get_submodule(spec.k), d) + _rows_sq(attn.get_submodule(spec.v), d)
        heads = head_sq.sqrt()
        groups = (head_sq.reshape(geo.kv, geo.group_size).sum(dim=1) + kv_sq).sqrt()
    if mlp is not None:
        down_sq = mlp.get_submodule(spec.down).weight.detach().double().pow(2).sum(dim=0)
        gate_up = _rows_sq(mlp.get_submodule(spec.gate), 1) + _rows_sq(mlp.get_submodule(spec.up), 1)
        channels = (gate_up + down_sq).sqrt()
    return LayerScores(heads, groups, channels)


def score_layers(view: BlockView, layers: list[int], score: str, acts: Activations | None) -> dict[int, LayerScores]:
    """Every unit's score in `layers` (acts is required for the activation-based scores)."""
    if score not in BUILTIN:
        raise ValueError(f"unknown score {score!r}; choose one of {BUILTIN}")
    adapter = view.adapter
    spec = modules_for(adapter)
    out = {}
    for i in layers:
        geo, attn, mlp = layer_parts(adapter, spec, i)
        if score == "magnitude":
            out[i] = magnitude_scores(attn, mlp, spec, geo)
            continue
        heads = groups = channels = None
        if attn is not None:
            factor = 1.0
            if score == "llm-bip" and mlp is not None:
                factor = propagation_factor(mlp.get_submodule(spec.up).weight, mlp.get_submodule(spec.down).weight)
            heads = activation_head_scores(acts.heads[i], attn.get_submodule(spec.o).weight, geo.head_dim, factor)
            groups = heads.reshape(geo.kv, geo.group_size).sum(dim=1)
        if mlp is not None:
            channels = activation_channel_scores(acts.channels[i], mlp.get_submodule(spec.down).weight)
        out[i] = LayerScores(heads, groups, channels)
    return out


def _compute(score: str):
    def compute(view: BlockView, windows: Windows | None, layers: list[int], batch_size: int) -> Scoring:
        acts = collect_activations(view, windows, layers, batch_size) if score != "magnitude" else None
        return Scoring(score_layers(view, layers, score, acts), acts.tokens if acts else 0)
    return compute


def _norms(score: str):
    """The spectral norms `score_layers` takes in one layer: W_o[:, h] for every head, and for LLM-BIP's
    factor W_up and W_down."""
    def shapes(hidden: int, heads: int, head_dim: int, intermediate: int) -> list[tuple[int, int]]:
        mlp = [(intermediate, hidden), (hidden, intermediate)] if score == "llm-bip" else []
        return [(hidden, head_dim)] * heads + mlp
    return shapes


for _name in BUILTIN:
    register(WidthScore(_name, _compute(_name), needs_data=_name != "magnitude",
                        matrix_norms=_norms(_name) if _name != "magnitude" else None))
