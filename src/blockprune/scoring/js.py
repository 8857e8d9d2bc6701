"""JS divergence (BlockPruner, Section 5.3 / Appendix D) as a metric the search can rank by (`--metric js`):
the Jensen-Shannon divergence between the dense model's next-token distribution and the masked model's,
averaged over tokens."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data import Windows
from ..view import BlockView
from .base import Progress, Scored
from .incremental import BoundaryCache
from .registry import ScorerEntry, register


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between two next-token distributions per position: (..., V) -> (...)."""
    lp, lq = F.log_softmax(logits_p.double(), -1), F.log_softmax(logits_q.double(), -1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    return 0.5 * ((lp.exp() * (lp - lm)).sum(-1) + (lq.exp() * (lq - lm)).sum(-1))


class JSScorer:
    """Mean JS divergence between the dense model's and each candidate-masked model's predictions.

    Candidates run from the cached block boundary before their first block, as `IncrementalScorer` does."""

    metric = name = "js"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1):
        self.view, self.windows, self.batch_size = view, windows, batch_size
        self.cache = BoundaryCache(view, windows, batch_size)

    @torch.no_grad()
    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None) -> Scored:
        view, cache = self.view, self.cache
        cache.sync(removed)
        starts = [cache.stored_at_or_before(min(view.by_name[n].index for n in c)) for c in candidates]
        sums, count = [0.0] * len(candidates), 0
        for b, (ids, prep) in enumerate(zip(cache.batches, cache.preps)):
            # dense logits once per batch and step, shared by every candidate (keeping them all costs windows x T x V)
            dense = view.adapter.head(view.run(prep.hidden, prep, frozenset()))
            for i, (c, start) in enumerate(zip(candidates, starts)):
                h = view.run(cache.states[b][start].to(view.device), prep, removed | c, start)
                sums[i] += float(js_divergence(dense, view.adapter.head(h)).sum())
            count += ids.numel()
            if progress:
                progress(ids.shape[0] * len(candidates))
        scores = [s / count for s in sums]
        n = len(candidates) * len(self.windows)
        return Scored(scores, n, n)


register(ScorerEntry("js", lambda view, windows, o: JSScorer(view, windows, o.batch_size),
                     "JS divergence of the next-token distribution from the dense model's", metric=True))
