"""Local block-importance metrics, as scorers the iterative search can use in place of perplexity
(`--metric bi|rm`), and the statistics ShortGPT and Relative Magnitude rank layers by.

- Block Influence (ShortGPT): BI = 1 - cos(x_in, x_out), averaged over tokens. A unit that barely
  turns the residual stream matters little.
- Relative Magnitude (ShortGPT's baseline): RM = ||f(x)|| / ||x + f(x)||, averaged over tokens, where
  f is the unit's non-residual part (x_out - x_in).

Both rate every candidate from one pass of the current (masked) model. Their scores are not
perplexities, so `registry.true_ppl_steps` moves a step's score aside and records the real calibration
perplexity in its place."""
from __future__ import annotations

from typing import AbstractSet, Callable, Sequence

import torch
import torch.nn.functional as F

from ..data import Windows
from ..view import BlockView
from .base import Progress, Scored
from .registry import ScorerEntry, register


def block_influence(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of each token's hidden state before and after a unit: (..., d) -> (...)."""
    return 1.0 - F.cosine_similarity(x_in.double(), x_out.double(), dim=-1)


def relative_magnitude(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """||f(x)|| / ||x + f(x)|| per token, with f(x) = x_out - x_in the unit's residual branch."""
    x_in, x_out = x_in.double(), x_out.double()
    return (x_out - x_in).norm(dim=-1) / x_out.norm(dim=-1)


Local = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (unit input, unit output) -> a value per token
LOCAL: dict[str, Local] = {"bi": block_influence, "rm": relative_magnitude}


def _span(view: BlockView, blocks: AbstractSet[str]) -> tuple[int, int]:
    """Execution-order range [start, stop) covering a unit (whole layers on parallel-residual models)."""
    idx = [view.by_name[b].index for b in blocks]
    start, stop = min(idx), max(idx) + 1
    if view.parallel:
        start, stop = start - start % 2, stop + stop % 2
    return start, stop


@torch.no_grad()
def unit_stats(view: BlockView, windows: Windows, units: Sequence[AbstractSet[str]], metric: str | Local,
               removed: AbstractSet[str] = frozenset(), batch_size: int = 1,
               progress: Progress | None = None) -> list[float]:
    """A local metric (`bi`, `rm`, or any function of a unit's input and output per token) of each unit in
    the model with `removed` masked, token-averaged.

    One pass of the masked model supplies every unit's input; each unit then runs once more on its own
    (the other blocks in its span masked) to give its output."""
    fn = LOCAL[metric] if isinstance(metric, str) else metric
    spans = [_span(view, u) for u in units]
    starts: dict[int, list[int]] = {}
    for i, (s, _) in enumerate(spans):
        starts.setdefault(s, []).append(i)
    sums, count = [0.0] * len(units), 0
    step = 2 if view.parallel else 1
    for b0 in range(0, len(windows), batch_size):
        ids = windows.ids[b0:b0 + batch_size]
        prep = view.prepare(ids)
        h = prep.hidden
        for pos in range(0, len(view.blocks), step):
            for i in starts.get(pos, []):
                s, e = spans[i]
                others = {b.name for b in view.blocks[s:e]} - set(units[i])
                out = view.run(h, prep, set(removed) | others, s, e)
                sums[i] += float(fn(h, out).sum())
            h = view.run(h, prep, removed, pos, pos + step)
        count += ids.numel()
        if progress:
            progress(ids.shape[0] * len(units))
    return [s / count for s in sums]


class LocalScorer:
    """A local metric of each candidate in the current masked model: `metric` names it (in the plan), `fn`
    computes it per token (default: the built-in of that name, Block Influence or Relative Magnitude)."""

    def __init__(self, metric: str, view: BlockView, windows: Windows, batch_size: int = 1, fn: Local | None = None):
        self.metric, self.name = metric, metric
        self.fn = fn or LOCAL[metric]
        self.view, self.windows, self.batch_size = view, windows, batch_size

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None) -> Scored:
        scores = unit_stats(self.view, self.windows, candidates, self.fn, removed, self.batch_size, progress)
        return Scored(scores, len(self.windows), len(self.windows))  # one pass serves every candidate


for _metric, _summary in (("bi", "Block Influence: 1 - cos(unit input, unit output)"),
                          ("rm", "Relative Magnitude: ||f(x)|| / ||x + f(x)||")):
    register(ScorerEntry(_metric, lambda view, windows, o, m=_metric: LocalScorer(m, view, windows, o.batch_size),
                         _summary, metric=True))
