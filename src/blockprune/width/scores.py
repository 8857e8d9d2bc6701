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

from ..arch import Adapter, adapter_for
from ..data import Windows
from ..view import BlockView
from .modules import WidthModules, has_branch, modules_for
from .registry import Scoring, WidthScore, register

#: the scores computed here (the published baselines register their own modules: see registry.py)
BUILTIN = ("llm-bip", "local", "magnitude")


@dataclass
class Geometry:
    """The current widths of one layer (None where depth pruning removed the branch)."""

    heads: int | None
    kv: int | None
    head_dim: int | None
    channels: int | None

    @property
    def group_size(self) -> int:
        return self.heads // self.kv


@dataclass
class LayerScores:
    heads: torch.Tensor | None  # (heads,)
    groups: torch.Tensor | None  # (kv,)
    channels: torch.Tensor | None  # (channels,)


def _sub(layer: nn.Module, path: str) -> nn.Module:
    return layer.get_submodule(path)


def layer_parts(adapter: Adapter, spec: WidthModules, i: int) -> tuple[Geometry, nn.Module | None, nn.Module | None]:
    """Layer i's widths and its attention and MLP modules (None where the layer has none to prune)."""
    geo = geometry(adapter, spec, i)
    layer = adapter.layers()[i]
    return (geo, _sub(layer, spec.attn) if geo.heads is not None else None,
            _sub(layer, spec.mlp) if geo.channels is not None else None)


def geometry(adapter: Adapter, spec: WidthModules, layer: int) -> Geometry:
    mod = adapter.layers()[layer]
    heads = kv = head_dim = channels = None
    if has_branch(adapter, spec, layer, "attn"):
        attn = _sub(mod, spec.attn)
        head_dim = attn.head_dim
        heads = _sub(attn, spec.o).in_features // head_dim
        kv = _sub(attn, spec.k).out_features // head_dim
    if has_branch(adapter, spec, layer, "mlp"):
        channels = _sub(_sub(mod, spec.mlp), spec.down).in_features
    return Geometry(heads, kv, head_dim, channels)


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


@torch.no_grad()
def collect_activations(view: BlockView, windows: Windows, layers: list[int], batch_size: int = 1) -> Activations:
    """One forward pass of the (dense) model over `windows`, hooks summing squared activations."""
    adapter = view.adapter
    spec = modules_for(adapter)
    heads: dict[int, torch.Tensor] = {}
    channels: dict[int, torch.Tensor] = {}
    handles = []

    # the sums are allocated before the pass and added to in place: small tensors made between the hooks'
    # large float64 temporaries would pin glibc's heap above them (the pass's RSS grew by the weights'
    # size at SmolLM2-135M's shape; view.window_nll had the same fault)
    def on_heads(i: int, head_dim: int):
        def hook(_mod, args):
            x = args[0].detach().double()
            heads[i].add_(x.reshape(-1, x.shape[-1] // head_dim, head_dim).pow(2).sum(dim=(0, 2)))
        return hook

    def on_channels(i: int):
        def hook(_mod, args):
            channels[i].add_(args[0].detach().double().reshape(-1, args[0].shape[-1]).pow(2).sum(dim=0))
        return hook

    for i in layers:
        geo = geometry(adapter, spec, i)
        layer = adapter.layers()[i]
        if geo.heads is not None:
            o = _sub(_sub(layer, spec.attn), spec.o)
            heads[i] = torch.zeros(geo.heads, dtype=torch.float64, device=o.weight.device)
            handles.append(o.register_forward_pre_hook(on_heads(i, geo.head_dim)))
        if geo.channels is not None:
            down = _sub(_sub(layer, spec.mlp), spec.down)
            channels[i] = torch.zeros(geo.channels, dtype=torch.float64, device=down.weight.device)
            handles.append(down.register_forward_pre_hook(on_channels(i)))
    try:
        for b in range(0, len(windows), batch_size):
            ids = windows.ids[b:b + batch_size]
            prep = view.prepare(ids)
            view.run(prep.hidden, prep, frozenset())
    finally:
        for h in handles:
            h.remove()
    return Activations(heads, channels, windows.ids.numel())


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
    return chan_sq.double().sqrt() * w_down.detach().double().norm(dim=0)


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
        o_sq = _sub(attn, spec.o).weight.detach().double().pow(2).sum(dim=0).reshape(-1, d).sum(dim=1)
        head_sq = _rows_sq(_sub(attn, spec.q), d) + o_sq
        kv_sq = _rows_sq(_sub(attn, spec.k), d) + _rows_sq(_sub(attn, spec.v), d)
        heads = head_sq.sqrt()
        groups = (head_sq.reshape(geo.kv, geo.group_size).sum(dim=1) + kv_sq).sqrt()
    if mlp is not None:
        down_sq = _sub(mlp, spec.down).weight.detach().double().pow(2).sum(dim=0)
        channels = (_rows_sq(_sub(mlp, spec.gate), 1) + _rows_sq(_sub(mlp, spec.up), 1) + down_sq).sqrt()
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
                factor = propagation_factor(_sub(mlp, spec.up).weight, _sub(mlp, spec.down).weight)
            heads = activation_head_scores(acts.heads[i], _sub(attn, spec.o).weight, geo.head_dim, factor)
            groups = heads.reshape(geo.kv, geo.group_size).sum(dim=1)
        if mlp is not None:
            channels = activation_channel_scores(acts.channels[i], _sub(mlp, spec.down).weight)
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
