"""Window NLL and perplexity of a `BlockView` with some blocks masked, as the BlockPruner paper defines
perplexity: exp of the mean over windows of each window's mean NLL.

The search's calibration perplexity (scorers, methods, the monitor, verify) is this; the test-set
perplexity of `blockprune eval` (`evaluate/perplexity.py`: WikiText-2, PTB, local texts) runs it on the
unmasked model."""
from __future__ import annotations

import math
from typing import AbstractSet, Callable

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
