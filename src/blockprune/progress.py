"""Progress bars of a search: one tqdm bar per step, with the step's and the whole run's time left."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    """A --ratio run's parameter budget, from which the number of steps left is estimated: what is left of
    the budget over the mean size of the candidates that still fit in it (the search picks by score, not
    size, so this is an estimate, shown as "~")."""

    total: int  # the model's parameters
    ratio: float
    sizes: dict[str, int]  # candidate unit -> its parameters
    removed: set[str] = field(default_factory=set)  # units removed so far (resumed steps included)

    def steps_left(self) -> int:
        left = self.ratio * self.total - sum(self.sizes.get(u, 0) for u in self.removed)
        fit = [s for u, s in self.sizes.items() if u not in self.removed and 0 < s <= left]
        if not fit:
            return 0
        return min(len(fit), max(1, math.floor(left / (sum(fit) / len(fit)))))


class RunProgress:
    """One tqdm bar per search step (its own ETA). When the number of steps is known (--num-blocks with
    an iterative method) or can be estimated (--ratio: from the parameter budget, see `Budget`), the bar
    also says which step of how many and the whole run's time left.

    A step's first update comes after its boundary cache is filled (cold caches, first windows: seconds
    to a minute under load), so that time is not extrapolated: the estimate uses the cost of a
    candidate-window measured from each step's first update on, plus each step's fill time, once seen.
    What is left of this step goes at this step's own pace (from its second update on), the candidates
    the remaining steps score (one fewer each step) at the finished steps' cost per candidate-window.
    The label is refreshed as the step goes, at most once a second."""

    def __init__(self, windows: int, steps: int | None, races: bool = False, budget: Budget | None = None):
        self.windows, self.steps, self.budget = windows, steps, budget
        self.races = races  # candidates may stop early: until a step has shown how many, the estimate is a bound
        self.candidates, self.seconds = 0, 0.0  # over the steps this process has finished
        # candidate-windows the finished steps ran, of those their bars offered (racing runs fewer)
        self.ran, self.offered = 0, 0
        # the finished bars' time after their first update, the candidate-windows it offered, and fill times
        self.timed_seconds, self.timed_offered, self.fills = 0.0, 0, []
        self.open: StepBar | None = None

    def bar(self, step: int, candidates: int):
        return StepBar(self, step, candidates)

    def total_steps(self, step: int) -> tuple[int | None, bool]:
        """The run's number of steps, seen from `step`, and whether it is an estimate."""
        if self.steps:
            return self.steps, False
        if self.budget is not None:
            return step - 1 + max(self.budget.steps_left(), 1), True
        return None, False

    def label(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0,
              since_first: tuple[int, float] | None = None) -> str:
        total, estimated = self.total_steps(step)
        where = f"step {step}/{'~' if estimated else ''}{total}" if total else f"step {step}"
        left = self.run_left(step, candidates, done, elapsed, since_first)
        bound = "at most " if self.races and not self.offered else ""
        return f"{where}: {candidates} candidates" + (f", run {bound}~{left} left" if left else "")

    def step_done(self, candidates: int, seconds: float, removed: str | None = None) -> None:
        if self.open is not None:  # a method that leaves its bar open (one-shot scoring): its line goes first
            self.open.close()
        self.candidates += candidates
        self.seconds += seconds
        if removed is not None and self.budget is not None:
            self.budget.removed.add(removed)

    def per_window(self) -> float | None:
        """Seconds per offered candidate-window in the finished steps, their cache fills left out."""
        if self.timed_offered:
            return self.timed_seconds / self.timed_offered
        if self.candidates:  # steps timed without a bar's updates: their whole time
            return self.seconds / (self.candidates * self.windows)
        return None

    def run_left(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0,
                 since_first: tuple[int, float] | None = None) -> str | None:
        """The run's time left during `step`: `done` candidate-windows of it ran in `elapsed` seconds;
        `since_first`: (candidate-windows, seconds) since its first update, the cache filled."""
        total, _ = self.total_steps(step)
        if not total or step > total:
            return None
        share = self.ran / self.offered if self.offered else 1.0
        pace = self.per_window()
        own = since_first[1] / since_first[0] if since_first and since_first[0] > 0 and since_first[1] > 0 else None
        if self.fills:  # each step's time to its first update: cache fill and first windows
            fill = sum(self.fills) / len(self.fills)
        else:  # this step's, once seen
            fill = max(elapsed - since_first[1], 0.0) if since_first else 0.0
        if own is not None:  # this step's own pace, its cache filled
            this = max(candidates * self.windows - done, 0) * share * own
        elif pace is not None:
            this = candidates * self.windows * pace + max(fill - elapsed, 0.0) if not done else \
                max(candidates * self.windows - done, 0) * pace
        else:
            return None  # only the cache fill and first windows seen: nothing to go on yet
        per_window = pace if pace is not None else own * share
        later = sum(max(candidates - j, 0) for j in range(1, total - step + 1))
        return _duration(this + later * self.windows * per_window + (total - step) * fill)


class StepBar:
    """A step's bar: `update(n)` as candidate-windows run, `close()` when the step ends. It closes at its
    total, since racing leaves candidate-windows that never run and the step is done all the same."""

    def __init__(self, progress: RunProgress, step: int, candidates: int):
        from tqdm.auto import tqdm

        self.progress, self.step, self.candidates = progress, step, candidates
        self.start = self.shown = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, candidate-windows) at the first update
        self.closed = False
        self.tqdm = tqdm(total=candidates * progress.windows, desc=progress.label(step, candidates), unit="win",
                         leave=False, file=sys.stderr)
        progress.open = self

    @property
    def desc(self) -> str:
        return self.tqdm.desc

    @property
    def total(self) -> int:
        return self.tqdm.total

    @property
    def n(self) -> int:
        return self.tqdm.n

    def update(self, n: int) -> None:
        self.tqdm.update(n)
        now = time.monotonic()
        if self.first is None:  # the cache is filled: time from here on is what candidates cost
            self.first = (now, self.tqdm.n)
            return
        if now - self.shown >= 1.0:
            self.shown = now
            since = (self.tqdm.n - self.first[1], now - self.first[0])
            self.tqdm.set_description_str(self.progress.label(self.step, self.candidates, self.tqdm.n,
                                                                 now - self.start, since), refresh=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        p = self.progress
        if self.first is not None and self.tqdm.n > self.first[1]:
            p.timed_seconds += time.monotonic() - self.first[0]
            p.timed_offered += self.tqdm.total - self.first[1]
            p.fills.append(self.first[0] - self.start)
        p.ran += self.tqdm.n
        p.offered += self.tqdm.total
        self.tqdm.update(self.tqdm.total - self.tqdm.n)
        self.tqdm.close()
        if p.open is self:
            p.open = None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
