"""LLM-Pruner's Taylor importance (Ma et al., NeurIPS 2023; horseee/LLM-Pruner, importance in
LLMPruner/pruner/hf_llama_pruner.py `TaylorImportance`, the calibration pass and the coupled groups in
hf_prune.py / llama3.py `--block_wise`), from gradients of the calibration loss.

Gradients: g = dL/dW of the mean next-token NLL over all calibration windows (each window's mean,
averaged), for the q/k/v/o and gate/up/down weights of the pruned layers only (the official code keeps
gradients for every parameter; these are the only ones the scores read). For the second-order variant
the diagonal Fisher F = mean over windows of g_w^2 (g_w: one window's gradient) stands in for the
Hessian's diagonal, as the official `acc_grad` does.

Per weight element the salience is S = W * g (first order); `element2` (the official `param_mix`, the
paper's Element^2) uses S = W * g - 1/2 * W * F * W. Per channel of one Linear (a row for q/k/v/gate/up,
a column for o/down), the importance is sum |S| over the channel's weights (element-wise: `param_first`,
the default, and `param_mix`) or |sum S| (vector-wise: `vectorize`). A coupled group sums its Linears'
channel importances (`--grouping_strategy sum`), and a head sums its head_dim channels:
- MLP channel j: gate row j + up row j + down column j;
- query head h: its q rows + its o columns;
- KV group g (`--gqa groups`): its query heads + its k rows + v rows. (llama3.py couples a KV head with
  the query heads at strided positions; here a group's heads are the contiguous ones transformers'
  `repeat_kv` pairs it with.)
Biases (Qwen2's q/k/v) do not enter, as in the official code."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Windows
from ..view import BlockView
from .modules import Geometry, WidthModules, geometry, layer_parts, modules_for
from .registry import Scoring, WidthScore, register
from .scores import LayerScores

VARIANTS = ("element1", "vector", "element2")


@dataclass
class Gradients:
    grad: dict[nn.Parameter, torch.Tensor]  # the calibration loss's gradient (float32)
    fisher: dict[nn.Parameter, torch.Tensor] | None  # mean over windows of the squared per-window gradient
    params: int  # weights with a gradient
    bytes: int  # gradient memory held at once: the .grad tensors plus the accumulators


def weights_of(view: BlockView, layers: list[int]) -> list[nn.Parameter]:
    """The projection weights of `layers` that the width methods prune (and LLM-Pruner differentiates)."""
    adapter = view.adapter
    spec = modules_for(adapter)
    out = []
    for i in layers:
        geo = geometry(adapter, spec, i)
        layer = adapter.layers()[i]
        if geo.heads is not None:
            attn = layer.get_submodule(spec.attn)
            out += [attn.get_submodule(n).weight for n in (spec.q, spec.k, spec.v, spec.o)]
        if geo.channels is not None:
            mlp = layer.get_submodule(spec.mlp)
            out += [mlp.get_submodule(n).weight for n in (spec.gate, spec.up, spec.down)]
    return out


def held_bytes(params: int, weight_bytes: int, fisher: bool) -> int:
    """Gradient memory `gradients` holds at once for `params` weights of `weight_bytes` each: the .grad
    tensors, and two float32 accumulators with the Fisher, or else the float32 gradients it returns (the
    .grad tensors themselves in fp32)."""
    return params * (weight_bytes + (8 if fisher else 4 if weight_bytes != 4 else 0))


def window_losses(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Each window's mean next-token NLL, differentiable."""
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
    nll = nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return nll.mean(dim=1)


def gradients(view: BlockView, windows: Windows, layers: list[int], batch_size: int = 1,
              fisher: bool = False) -> Gradients:
    """The calibration loss's gradient w.r.t. the pruned layers' projection weights (and, with `fisher`,
    the diagonal Fisher, which needs one backward pass per window). The model is left as it was."""
    model = view.model
    weights = weights_of(view, layers)
    wanted = {id(p) for p in weights}
    before = {id(p): p.requires_grad for p in model.parameters()}
    n = len(windows)
    grad = {p: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in weights} if fisher else None
    fish = {p: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in weights} if fisher else None
    step = 1 if fisher else batch_size
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
            p.grad = None
        with torch.enable_grad():
            for b in range(0, n, step):
                ids = windows.ids[b:b + step].to(view.device)
                loss = window_losses(model, ids).sum() / (1 if fisher else n)
                loss.backward()
                if fisher:  # one window: its gradient is p.grad; accumulate, then start the next afresh
                    for p in weights:
                        g = p.grad.float()
                        grad[p].add_(g, alpha=1 / n)
                        fish[p].addcmul_(g, g, value=1 / n)
                        p.grad = None
        if not fisher:
            grad = {p: p.grad.float() for p in weights}
        params = sum(p.numel() for p in weights)
        return Gradients(grad, fish, params, held_bytes(params, weights[0].element_size(), fisher))
    finally:
        for p in model.parameters():
            p.grad = None
            p.requires_grad_(before[id(p)])


def salience(w: torch.Tensor, g: torch.Tensor, f: torch.Tensor | None, variant: str) -> torch.Tensor:
    """Per weight element: W * g, or W * g - W * F * W / 2 for element2 (float64)."""
    w, g = w.detach().double(), g.double()
    s = w * g
    if variant == "element2":
        s = s - 0.5 * w * f.double() * w
    return s


def channel_importance(s: torch.Tensor, dim: int, variant: str) -> torch.Tensor:
    """One Linear's importance per channel, from its salience `s` (out x in): dim=1 per output row,
    dim=0 per input column; sum |S| (element-wise) or |sum S| (vector-wise)."""
    return s.sum(dim=dim).abs() if variant == "vector" else s.abs().sum(dim=dim)


def layer_scores(attn: nn.Module | None, mlp: nn.Module | None, spec: WidthModules, geo: Geometry,
                 grads: Gradients, variant: str) -> LayerScores:
    def imp(lin: nn.Linear, dim: int) -> torch.Tensor:
        w = lin.weight
        f = grads.fisher[w] if grads.fisher is not None else None
        return channel_importance(salience(w, grads.grad[w], f, variant).cpu(), dim, variant)

    heads = groups = channels = None
    if attn is not None:
        d = geo.head_dim
        per = lambda t: t.reshape(-1, d).sum(dim=1)  # noqa: E731  channels -> heads
        heads = per(imp(attn.get_submodule(spec.q), 1)) + per(imp(attn.get_submodule(spec.o), 0))
        kv = per(imp(attn.get_submodule(spec.k), 1)) + per(imp(attn.get_submodule(spec.v), 1))
        groups = heads.reshape(geo.kv, geo.group_size).sum(dim=1) + kv
    if mlp is not None:
        channels = (imp(mlp.get_submodule(spec.gate), 1) + imp(mlp.get_submodule(spec.up), 1)
                    + imp(mlp.get_submodule(spec.down), 0))
    return LayerScores(heads, groups, channels)


def _compute(variant: str, fisher: bool):
    def compute(view: BlockView, windows: Windows, layers: list[int], batch_size: int) -> Scoring:
        adapter = view.adapter
        spec = modules_for(adapter)
        grads = gradients(view, windows, layers, batch_size, fisher=fisher)
        out = {}
        for i in layers:
            geo, attn, mlp = layer_parts(adapter, spec, i)
            out[i] = layer_scores(attn, mlp, spec, geo, grads, variant)
        info = {"taylor": variant, "gradient_params": grads.params, "gradient_bytes": grads.bytes}
        return Scoring(out, windows.ids.numel(), info=info)
    return compute


for _name, _variant in (("llm-pruner", "element1"), ("llm-pruner-vector", "vector"),
                       ("llm-pruner-element2", "element2")):
    _fisher = _variant == "element2"  # the second-order term needs the diagonal Fisher
    register(WidthScore(_name, _compute(_variant, _fisher), rank="score", gradients=True, fisher=_fisher))
