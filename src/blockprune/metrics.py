"""Local block-importance metrics, as scorers the iterative search can use in place of perplexity.

- Block Influence (ShortGPT): BI = 1 - cos(x_in, x_out), averaged over tokens. A unit that barely
  turns the residual stream matters little.
- Relative Magnitude (ShortGPT's baseline): RM = ||f(x)|| / ||x + f(x)||, averaged over tokens, where
  f is the unit's non-residual part (x_out - x_in).
- JS divergence: Jensen-Shannon divergence between the dense model's next-token distribution and the
  masked model's, averaged over tokens (BlockPruner, Section 5.3 / Appendix D).

Each scorer has `PlainScorer`'s interface, `.score(removed, candidates, progress) -> Scored`, lower
meaning "remove first". BI and RM rate every candidate from one pass of the current (masked) model;
JS runs every candidate like perplexity does. Their scores are not perplexities, so `true_ppl_steps`
moves a step's score aside and records the real calibration perplexity in its place."""
from __future__ import annotations

import math
import time
from typing import AbstractSet, Callable, Sequence

import torch
import torch.nn.functional as F

from .data import Windows
from .perplexity import PlainScorer, Progress, Scored, perplexity
from .view import BlockView

METRICS = ("ppl", "bi", "rm", "js")


def block_influence(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of each token's hidden state before and after a unit: (..., d) -> (...)."""
    return 1.0 - F.cosine_similarity(x_in.double(), x_out.double(), dim=-1)


def relative_magnitude(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """||f(x)|| / ||x + f(x)|| per token, with f(x) = x_out - x_in the unit's residual branch."""
    x_in, x_out = x_in.double(), x_out.double()
    return (x_out - x_in).norm(dim=-1) / x_out.norm(dim=-1)


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between two next-token distributions per position: (..., V) -> (...)."""
    lp, lq = F.log_softmax(logits_p.double(), -1), F.log_softmax(logits_q.double(), -1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    return 0.5 * ((lp.exp() * (lp - lm)).sum(-1) + (lq.exp() * (lq - lm)).sum(-1))


LOCAL = {"bi": block_influence, "rm": relative_magnitude}


def _span(view: BlockView, blocks: AbstractSet[str]) -> tuple[int, int]:
    """Execution-order range [start, stop) covering a unit (whole layers on parallel-residual models)."""
    idx = [view.by_name[b].index for b in blocks]
    start, stop = min(idx), max(idx) + 1
    if view.parallel:
        start, stop = start - start % 2, stop + stop % 2
    return start, stop


@torch.no_grad()
def unit_stats(view: BlockView, windows: Windows, units: Sequence[AbstractSet[str]], metric: str,
               removed: AbstractSet[str] = frozenset(), batch_size: int = 1,
               progress: Progress | None = None) -> list[float]:
    """A local metric (`bi` or `rm`) of each unit in the model with `removed` masked, token-averaged.

    One pass of the masked model supplies every unit's input; each unit then runs once more on its own
    (the other blocks in its span masked) to give its output."""
    fn = LOCAL[metric]
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
    """Block Influence or Relative Magnitude of each candidate in the current masked model."""

    def __init__(self, metric: str, view: BlockView, windows: Windows, batch_size: int = 1):
        self.metric, self.name = metric, metric
        self.view, self.windows, self.batch_size = view, windows, batch_size

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None) -> Scored:
        scores = unit_stats(self.view, self.windows, candidates, self.metric, removed, self.batch_size, progress)
        return Scored(scores, len(self.windows), len(self.windows))  # one pass serves every candidate


class JSScorer:
    """Mean JS divergence between the dense model's and each candidate-masked model's predictions.

    Candidates run from the cached block boundary before their first block, as `IncrementalScorer` does."""

    metric = name = "js"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1):
        from .incremental import BoundaryCache

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


def make_scorer(metric: str, view: BlockView, windows: Windows, batch_size: int = 1, ppl_scorer=None):
    """The scorer for `metric`; for "ppl", `ppl_scorer` (any perplexity scorer) or a plain one."""
    if metric == "ppl":
        return ppl_scorer or PlainScorer(view, windows, batch_size)
    if metric in LOCAL:
        return LocalScorer(metric, view, windows, batch_size)
    if metric == "js":
        return JSScorer(view, windows, batch_size)
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


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
