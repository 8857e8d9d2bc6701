"""Perplexity as the BlockPruner paper defines it: exp of the mean over windows of each window's mean NLL.

`PlainScorer` is the reference way to score removal candidates: one full forward pass per candidate.
Every faster scorer must select exactly what this one selects."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import AbstractSet, Callable, Sequence

import torch

from .data import Windows
from .view import BlockView

Progress = Callable[[int], None]  # called with the number of windows just evaluated


def window_nll(view: BlockView, windows: Windows, removed: AbstractSet[str] = frozenset(), batch_size: int = 1,
               progress: Progress | None = None) -> torch.Tensor:
    """Each window's mean next-token NLL (float64, one per window) with `removed` blocks masked."""
    out = []
    for i in range(0, len(windows), batch_size):
        ids = windows.ids[i:i + batch_size]
        prep = view.prepare(ids)
        h = view.run(prep.hidden, prep, removed)
        out.append(view.window_nll(h, ids))
        if progress:
            progress(ids.shape[0])
    return torch.cat(out)


def ppl_from_nll(nll: torch.Tensor) -> float:
    m = float(nll.mean())
    return math.exp(m) if math.isfinite(m) else math.inf if m == math.inf else math.nan


def perplexity(view: BlockView, windows: Windows, removed: AbstractSet[str] = frozenset(), batch_size: int = 1,
               progress: Progress | None = None) -> float:
    return ppl_from_nll(window_nll(view, windows, removed, batch_size, progress))


@dataclass
class Scored:
    """What a scorer returns for one step: a score per candidate and what it cost."""

    scores: list[float]  # lower is better; NaN for a candidate whose evaluation failed numerically
    evaluated_windows: int  # candidate-windows actually run
    exhaustive_windows: int  # candidate-windows a plain evaluation would run
    windows: list[int] | None = None  # windows behind each score, where a scorer stopped some early
    # candidates whose score is final (search precision, every window), where a scorer leaves others
    # with only a fast-precision score; None: `windows` alone says which are complete
    decided: list[int] | None = None
    precision: dict | None = None  # the two-precision scorer's record of the step (see twoprecision.py)

    def complete(self, i: int) -> bool:
        if self.decided is not None:
            return i in self.decided
        return self.windows is None or self.windows[i] == max(self.windows)


class PlainScorer:
    """Calibration perplexity of each candidate removal set, by a full forward pass each."""

    name = "plain"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1):
        self.view, self.windows, self.batch_size = view, windows, batch_size

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None) -> Scored:
        scores = [perplexity(self.view, self.windows, removed | c, self.batch_size, progress) for c in candidates]
        n = len(candidates) * len(self.windows)
        return Scored(scores, n, n)
