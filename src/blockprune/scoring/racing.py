"""Racing: spend calibration windows only on candidates still in contention.

Round by round, every candidate still in the race is scored on one more batch of windows. After each
round a candidate leaves when its mean NLL difference from the leader, paired window by window, is above
zero by more than `z` standard errors (with the finite-population correction for the windows not yet
seen): the full-data mean could then not plausibly favour it. Survivors finish on every window, so the
chosen block's recorded perplexity is exact; a candidate that left early is recorded with its
partial-window perplexity. Selections can differ from exhaustive scoring only when the bound is wrong,
which a larger `z` makes rarer.

The standard error of a candidate's difference uses the larger of its own spread and a noise floor: the
root-mean-square spread of the `floor_from` best candidates' differences after the first round (the best
ones run a second batch when the first holds one window). Why: a candidate that could still beat the
leader is a near-tie, and near-ties differ from the leader by about that much from window to window; a
spread of two or three windows alone can be near zero by chance. The floor is also what lets a candidate
leave after a single window, so the first round costs one batch per candidate instead of two. On
bench/search_speed's recorded per-window scores this cuts the candidate-windows from 340 to 286 of 952
at z = 3, and over 300 shuffled window orders it chooses exhaustive scoring's blocks in 289 (the
two-window first round without a floor: 229).

The default z is 2.5: the smallest of 2, 2.5 and 3 for which, on those recorded scores with the windows
shuffled 300 times (600 step-races), the block chosen was never more than 0.5% worse in calibration
perplexity than exhaustive scoring's choice (at most 0.37% worse, 40 of 600 choices differ; z = 3: 0.11%,
11 of 600; z = 2: 1.0%, 86). z = 3 costs 286 candidate-windows there, z = 2.5 247.
`python bench/search_speed/replay.py` prints these figures."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..data import Windows
from ..declared import Option
from ..window_nll import ppl_from_nll
from ..view import BlockView
from .base import Progress, Scored
from .incremental import BoundaryCache
from .registry import ScorerEntry, register

DEFAULT_Z = 2.5


def _mean(t: torch.Tensor) -> float:
    m = float(t.mean())
    return m if math.isfinite(m) else math.inf  # NaN ranks last, like inf


def _leader(nll: dict[int, torch.Tensor], cands: Sequence[int]) -> int:
    return min(cands, key=lambda c: (_mean(nll[c]), c))


def noise_floor(nll: dict[int, torch.Tensor], best: Sequence[int]) -> float:
    """Root-mean-square standard deviation of the paired per-window NLL differences between the leader
    of `best` and each other candidate of `best` (all seen on the same windows, at least two)."""
    leader = _leader(nll, best)
    var = [float((nll[c] - nll[leader]).var(unbiased=True)) for c in best if c != leader]
    var = [v for v in var if math.isfinite(v)]
    return math.sqrt(sum(var) / len(var)) if var else 0.0


def survivors(nll: dict[int, torch.Tensor], alive: list[int], seen: int, total: int, z: float,
              floor: float = 0.0, margin: float = 0.0) -> list[int]:
    """The candidates still in the race after their first `seen` of `total` windows (per-window NLLs).

    `margin` (nats) widens the bound for NLLs known only approximately: a candidate stays while it could be
    within `margin` of the leader."""
    if seen >= total or len(alive) < 2:
        return alive
    nll = {c: nll[c][:seen] for c in alive}
    leader = _leader(nll, alive)
    fpc = math.sqrt((total - seen) / max(total - 1, 1))
    keep = []
    for c in alive:
        d = nll[c] - nll[leader]
        mean = _mean(d)
        spread = float(d.std(unbiased=True)) if seen > 1 else (floor if floor > 0 else math.inf)
        se = max(spread, floor) / math.sqrt(seen) * fpc
        if c == leader or (math.isfinite(mean) and mean - z * se <= margin):
            keep.append(c)
    return keep


def race(count: int, batch_windows: Sequence[int], look: Callable[[int, int], torch.Tensor], z: float,
         floor_from: int = 8, margin_from: Callable[[list[int], int], float] | None = None) -> dict[int, torch.Tensor]:
    """Race `count` candidates over batches of windows; `look(c, b)` returns candidate c's per-window NLLs
    on batch b; `floor_from` 0 races without a noise floor. `margin_from(best, batches)`, given the best
    candidates of the first round and how many batches they ran, returns the margin (nats) that
    `survivors` allows. Returns each candidate's NLLs on the windows it ran (every window for the
    survivors)."""
    got: dict[int, list[torch.Tensor]] = {c: [look(c, 0)] for c in range(count)}

    def nll() -> dict[int, torch.Tensor]:
        return {c: torch.cat(t) for c, t in got.items()}

    alive, total = list(range(count)), sum(batch_windows)
    floor = margin = 0.0
    best = sorted(alive, key=lambda c: (_mean(got[c][0]), c))[:max(2, floor_from)]
    if count > 1 and len(batch_windows) > 1 and floor_from > 0:
        if batch_windows[0] < 2:  # one window says nothing about spread: the best run a second batch
            for c in best:
                got[c].append(look(c, 1))
        floor = noise_floor(nll(), best)
    if margin_from is not None:
        margin = margin_from(best, len(got[best[0]]))
    seen = batch_windows[0]
    for b in range(1, len(batch_windows) + 1):
        alive = survivors(nll(), alive, seen, total, z, floor, margin)
        if b == len(batch_windows):
            break
        for c in alive:
            if len(got[c]) == b:
                got[c].append(look(c, b))
        seen += batch_windows[b]
    return nll()


def per_size(look: Callable[[int, int], torch.Tensor], sizes: Sequence[int] | None,
             cache: BoundaryCache) -> Callable[[int, int], torch.Tensor]:
    """`look` as the race should see it. With `sizes` (each candidate's parameters), candidates race on
    their NLL rise over the current model per million parameters, window by window: the mean of that is
    the per-parameter criterion (`search.criteria`), so a large unit is not dropped for a rise that its
    size pays for. Without, on the NLL itself."""
    if sizes is None:
        return look
    base: dict[int, torch.Tensor] = {}

    def rise(c: int, b: int) -> torch.Tensor:
        if b not in base:
            base[b] = cache.current_nll(b)
        return (look(c, b).double() - base[b].double()) * (1e6 / sizes[c])
    return rise


class RacingScorer:
    name = "racing"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1, every: int = 1,
                 device: str | None = None, z: float = DEFAULT_Z, floor_from: int = 8):
        self.view, self.windows, self.batch_size = view, windows, batch_size
        self.cache = BoundaryCache(view, windows, batch_size, every, device)
        self.z = z
        self.floor_from = floor_from

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored:
        self.cache.sync(removed)
        batches = self.cache.batches
        firsts = [min(self.view.by_name[n].index for n in c) for c in candidates]
        evaluated = 0
        raw: dict[int, list[torch.Tensor]] = {c: [] for c in range(len(candidates))}

        def look(c: int, b: int) -> torch.Tensor:
            nonlocal evaluated
            evaluated += batches[b].shape[0]
            if progress:
                progress(batches[b].shape[0])
            raw[c].append(self.cache.final_nll(b, removed | candidates[c], firsts[c]))
            return raw[c][-1]

        race(len(candidates), [t.shape[0] for t in batches], per_size(look, sizes, self.cache), self.z, self.floor_from)
        nll = {c: torch.cat(t) for c, t in raw.items()}
        scores = [ppl_from_nll(nll[i]) for i in range(len(candidates))]
        counts = [nll[i].numel() for i in range(len(candidates))]
        return Scored(scores, evaluated, len(candidates) * len(self.windows), counts)


#: --racing-z, read by every scorer that races (this one and twoprecision's fast)
RACING_Z = Option("racing_z", DEFAULT_Z, type=float,
                  help="racing and fast: a candidate leaves once it trails the leader by this many standard errors "
                       "(lower: faster, more risk of a choice exhaustive scoring would not make)",
                  check=lambda z: None if z > 0 else f"--racing-z must be positive (got {z})")

register(ScorerEntry("racing", lambda view, windows, o: RacingScorer(view, windows, o.batch_size, o.cache_every,
                                                                     o.cache_device, z=o.racing_z),
                     "incremental, and drops clear losers early", races=True, like_exhaustive=True,
                     options=(RACING_Z,)))
