"""The scorer registry: a name for every way of rating candidates, and the one factory.

An entry is either a perplexity scorer (chosen with `--scorer`: plain, incremental, racing, and fast, which is
two-precision racing), which all compute calibration perplexity and differ only in speed, or a metric (chosen
with `--metric`: bi, rm, js), which ranks candidates by its own score. `--metric ppl` means "rank by
perplexity, computed by --scorer". Each entry's `build(view, windows, options)` reads what it needs from
the run's `PruneOptions`."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..data import Windows
from ..declared import Option
from ..window_nll import perplexity
from ..registry import Registry
from ..view import BlockView
from .base import Scorer

PERPLEXITY = "ppl"  # the --metric that ranks by the perplexity scorer's output


@dataclass(frozen=True)
class ScorerEntry:
    """A scorer or metric as `register(ScorerEntry(name, build, summary, ...))` declares it."""

    name: str
    build: Callable[[BlockView, Windows, Any], Scorer]
    summary: str
    metric: bool = False  # ranks by a score of its own (--metric), not by perplexity (--scorer)
    races: bool = False  # may stop candidates before every window (--racing-z applies)
    #: a perplexity scorer that selects what exhaustive full-precision scoring selects, exactly (plain,
    #: incremental) or within its stated tolerance (racing, fast): a resume may switch between such scorers
    like_exhaustive: bool = False
    #: the options only this scorer reads (`declared.Option`; one shared by several scorers is one object
    #: listed by each): their flags, checks and plan record come from there, and another --scorer refuses them
    options: tuple[Option, ...] = ()


#: every scorer and metric, by name (`blockprune.registry`: one registration per name, in registration order)
SCORERS: Registry[ScorerEntry] = Registry("scorer")
register = SCORERS.register
unregister = SCORERS.unregister
get = SCORERS.get


def perplexity_scorers() -> tuple[str, ...]:
    return tuple(n for n, e in SCORERS.items() if not e.metric)


def metrics() -> tuple[str, ...]:
    """--metric choices: perplexity first, then every registered metric."""
    return (PERPLEXITY, *(n for n, e in SCORERS.items() if e.metric))


def make_scorer(view: BlockView, windows: Windows, options: Any) -> Scorer:
    """The scorer a run's options ask for: its metric's, or (metric ppl) its perplexity scorer's."""
    return get(options.scorer if options.metric == PERPLEXITY else options.metric).build(view, windows, options)


def true_ppl_steps(on_step: Callable | None, view: BlockView, windows: Windows, metric: str,
                   batch_size: int = 1) -> Callable:
    """Wrap a search's per-step callback so a step chosen by `metric` records the metric as `score`
    and the removal set's real calibration perplexity as `ppl` (what export, report and compare read)."""

    def wrapped(plan, seconds: float) -> None:
        s = plan.steps[-1]
        if "metric" not in s:  # a method that records both itself marks its steps
            t0 = time.perf_counter()
            s["metric"], s["score"] = metric, s["ppl"]
            s["ppl"] = perplexity(view, windows, plan.removed_blocks, batch_size)
            s["evaluated_windows"] += len(windows)
            seconds += time.perf_counter() - t0
        if on_step:
            on_step(plan, seconds)
    return wrapped
