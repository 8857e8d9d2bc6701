"""What every scorer is: the `Scorer` protocol and the `Scored` record a step gets back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..window_nll import Progress


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


class Scorer(Protocol):
    """Rates candidate removals of the current (masked) model; lower means "remove first".

    `score(removed, candidates)` scores each candidate set of blocks added to `removed`. `batch_size` is
    the windows per forward pass the scorer runs, which methods reuse for passes they make themselves.

    `sizes` (each candidate's parameter count) says the search ranks by perplexity rise per parameter
    (`search.criteria`): a scorer that stops candidates early must then stop them by that criterion;
    one that scores every candidate completely may ignore it."""

    name: str
    batch_size: int

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored: ...
