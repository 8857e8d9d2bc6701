"""The reference scorer: one full forward pass per candidate. Every faster scorer must select what it selects."""
from __future__ import annotations

from typing import Sequence

from ..data import Windows
from ..window_nll import perplexity
from ..view import BlockView
from .base import Progress, Scored
from .registry import ScorerEntry, register


class PlainScorer:
    """Calibration perplexity of each candidate removal set, by a full forward pass each."""

    name = "plain"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1):
        self.view, self.windows, self.batch_size = view, windows, batch_size

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored:
        # every score is complete: the search ranks by its criterion itself, `sizes` changes nothing here
        scores = [perplexity(self.view, self.windows, removed | c, self.batch_size, progress) for c in candidates]
        n = len(candidates) * len(self.windows)
        return Scored(scores, n, n)


register(ScorerEntry("plain", lambda view, windows, o: PlainScorer(view, windows, o.batch_size),
                     "a full forward pass per candidate (the reference)", like_exhaustive=True))
