"""Progress bars of a search: one tqdm bar per step, with the step's and the whole run's time left."""
from __future__ import annotations

import sys
import time


class RunProgress:
    """One tqdm bar per search step (its own ETA). When the number of steps is known (--num-blocks with
    an iterative method), the bar also says which step of how many and the whole run's time left: what
    is left of this step at the candidate-windows per second seen so far in it, plus the candidates the
    remaining steps score (one fewer each step) at the time per candidate of the steps done so far. The
    label is refreshed as the step goes, at most once a second."""

    def __init__(self, windows: int, steps: int | None, races: bool = False):
        self.windows, self.steps = windows, steps
        self.races = races  # candidates may stop early: until a step has shown how many, the estimate is a bound
        self.candidates, self.seconds = 0, 0.0  # over the steps this process has finished
        # candidate-windows the finished steps ran, of those their bars offered (racing runs fewer)
        self.ran, self.offered = 0, 0

    def bar(self, step: int, candidates: int):
        return StepBar(self, step, candidates)

    def label(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0) -> str:
        where = f"step {step}/{self.steps}" if self.steps else f"step {step}"
        left = self.run_left(step, candidates, done, elapsed)
        bound = "at most " if self.races and not self.offered else ""
        return f"{where}: {candidates} candidates" + (f", run {bound}~{left} left" if left else "")

    def step_done(self, candidates: int, seconds: float) -> None:
        self.candidates += candidates
        self.seconds += seconds

    def run_left(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0) -> str | None:
        if not self.steps or step > self.steps:
            return None
        if done and elapsed > 0:  # this step's own pace
            share = self.ran / self.offered if self.offered else 1.0
            seconds_per_window = elapsed / done
            this = max(candidates * self.windows - done, 0) * share * seconds_per_window
            per_candidate = self.seconds / self.candidates if self.candidates else \
                self.windows * share * seconds_per_window
        elif self.candidates:
            per_candidate = self.seconds / self.candidates
            this = candidates * per_candidate
        else:
            return None
        later = sum(max(candidates - j, 0) for j in range(1, self.steps - step + 1))
        return _duration(this + later * per_candidate)


class StepBar:
    """A step's bar: `update(n)` as candidate-windows run, `close()` when the step ends. It closes at its
    total, since racing leaves candidate-windows that never run and the step is done all the same."""

    def __init__(self, progress: RunProgress, step: int, candidates: int):
        from tqdm.auto import tqdm

        self.progress, self.step, self.candidates = progress, step, candidates
        self.start = self.shown = time.monotonic()
        self.tqdm = tqdm(total=candidates * progress.windows, desc=progress.label(step, candidates), unit="win",
                         leave=False, file=sys.stderr)

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
        if now - self.shown >= 1.0:
            self.shown = now
            self.tqdm.set_description_str(self.progress.label(self.step, self.candidates, self.tqdm.n, now - self.start),
                                      refresh=False)

    def close(self) -> None:
        self.progress.ran += self.tqdm.n
        self.progress.offered += self.tqdm.total
        self.tqdm.update(self.tqdm.total - self.tqdm.n)
        self.tqdm.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
