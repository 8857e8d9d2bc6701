"""Per-input-channel statistics of the output and down projections over the calibration tokens: one
forward pass of the (dense) model with forward pre-hooks, sums accumulated in float64.

For every layer asked for, `o` is the output projection's input (the heads' outputs side by side:
channel c belongs to head c // head_dim) and `down` the down projection's input (the MLP's
intermediate activations). Wanda-sp reads the sums of squares; FLAP the sums and sums of squares
(mean and variance over tokens)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Windows
from ..view import BlockView
from .modules import geometry, modules_for


@dataclass
class Moments:
    """Over `n` tokens: each input channel's sum and sum of squares (float64)."""

    n: int
    sum: torch.Tensor
    sq: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    @property
    def variance(self) -> torch.Tensor:
        """The sample variance over tokens (n - 1 in the denominator)."""
        return ((self.sq - self.sum * self.sum / self.n) / max(self.n - 1, 1)).clamp_min(0.0)


class Collector:
    """Forward pre-hooks on the output and down projections of some layers, summing their inputs."""

    def __init__(self, view: BlockView, layers: list[int]):
        adapter = view.adapter
        spec = modules_for(adapter)
        self.layers = list(layers)
        self.acc: dict[int, dict[str, list]] = {}
        self.handles = []
        for i in layers:
            geo = geometry(adapter, spec, i)
            layer = adapter.layers()[i]
            if geo.heads is not None:
                self._watch(i, "o", layer.get_submodule(spec.attn).get_submodule(spec.o))
            if geo.channels is not None:
                self._watch(i, "down", layer.get_submodule(spec.mlp).get_submodule(spec.down))

    def _watch(self, i: int, kind: str, lin: nn.Linear) -> None:
        # the sums are allocated before the pass and added to in place: small tensors made between the
        # hooks' large float64 temporaries would pin glibc's heap above them (width.scores has the same)
        like = {"dtype": torch.float64, "device": lin.weight.device}
        n = lin.in_features
        self.acc.setdefault(i, {})[kind] = [0, torch.zeros(n, **like), torch.zeros(n, **like)]
        self.handles.append(lin.register_forward_pre_hook(self._hook(i, kind)))

    def _hook(self, i: int, kind: str):
        def on_input(_mod, args):
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])
            s = self.acc[i][kind]
            s[0] += x.shape[0]
            s[1].add_(x.sum(dim=0))
            s[2].add_(x.pow(2).sum(dim=0))
        return on_input

    def remove(self) -> dict[int, dict[str, Moments]]:
        """Unhook; per layer {"o": Moments, "down": Moments} for the branches it has."""
        for h in self.handles:
            h.remove()
        return {i: {k: Moments(n, s.cpu(), q.cpu()) for k, (n, s, q) in self.acc.get(i, {}).items() if n}
                for i in self.layers}


@torch.no_grad()
def input_moments(view: BlockView, windows: Windows, layers: list[int],
                  batch_size: int = 1) -> tuple[dict[int, dict[str, Moments]], int]:
    """Per layer in `layers`, {"o": Moments, "down": Moments} for the branches it has; and the token count."""
    collector = Collector(view, layers)
    try:
        for b in range(0, len(windows), batch_size):
            prep = view.prepare(windows.ids[b:b + batch_size])
            view.run(prep.hidden, prep, frozenset())
    finally:
        moments = collector.remove()
    return moments, windows.ids.numel()
