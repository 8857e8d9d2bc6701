"""Two-precision racing, the scorer `--scorer fast` runs (`fast` is the name plans record, so it stays):
rank candidates in a fast low precision, decide the near-ties in the search's own.

A low precision (bf16) ranks blocks well but cannot order near-ties: on SmolLM2 it moves the dense
calibration perplexity by 0.2% and swaps the two best first-step blocks. So each step runs in two stages:

1. **Fast race.** A copy of the model in the fast precision races every candidate over the calibration
   windows (`racing.race`), with one change: a candidate stays in the race while it could be within
   `margin` nats of the leader, the margin covering the fast precision's error. Survivors run every window.
2. **Full-precision decision.** The survivors whose full fast-precision score is within `margin` of the
   fast leader cannot be told apart by the fast precision; they are scored in the search's precision
   (`--dtype`) on every window, and the step chooses among them there. The chosen unit's recorded
   perplexity is therefore always full precision; the other candidates keep their fast-precision
   (possibly partial) scores and never outrank a decided one.

The margin is measured on the run's own data, every step: after the race's first round, the best
candidates (racing's noise-floor set) also run those first windows in full precision; for each of them
the error of its paired NLL difference from the fast leader, fast minus full, is measured, and the
margin is `SAFETY` times the largest. Those full-precision runs are reused when a probed candidate is
decided in full precision. The step records the margin, the error measured afterwards among the decided
candidates on every window, the candidate-windows run in each precision and which candidates were
decided in full precision.

The fast precision is bf16 where the hardware runs it natively: a CUDA GPU of compute capability 8.0 or
newer, or a CPU with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo's flags). Elsewhere (or when the
search already runs in bf16, or the model is sharded over devices) the scorer is plain racing, with
racing's results.

Memory: the fast copy of the weights (parameters x 2 bytes) and a second boundary cache in the fast
precision (stored boundaries x windows x seqlen x hidden x 2 bytes), beside the full-precision cache."""
from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Sequence

import torch

from ..data import Windows
from ..declared import Option
from ..window_nll import ppl_from_nll
from ..view import BlockView
from .base import Progress, Scored
from .incremental import BoundaryCache
from .racing import DEFAULT_Z, RACING_Z, RacingScorer, _mean, per_size, race
from .registry import ScorerEntry, register

FAST_DTYPES = {"bf16": torch.bfloat16}
# the margin is this many times the largest fast-vs-full error of a paired difference measured in the
# step's probe: the probe sees a few windows of a few candidates, the decision needs a bound for all
SAFETY = 2.0


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_fast_dtype(device: str | torch.device) -> str | None:
    """The low precision this device runs natively and faster than fp32, or None."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8:
            return "bf16"
        return None
    if device.type == "cpu" and cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return "bf16"
    return None


def fast_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` in `dtype`, converted tensor by tensor: a deep copy followed by a cast would hold a second
    full-precision copy of the weights for a moment (60 GiB for an fp32 8B model). Tied weights stay tied."""
    memo: dict[int, torch.Tensor] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in memo and t.is_floating_point():
            low = t.detach().to(dtype)
            memo[id(t)] = torch.nn.Parameter(low, requires_grad=t.requires_grad) if isinstance(t, torch.nn.Parameter) else low
    return copy.deepcopy(model, memo).eval()


class TwoPrecisionScorer:
    """Two-precision racing (`--scorer fast`): racing in a fast precision, the near-ties decided in the
    model's own (see the module doc).

    `fast_dtype` None (or the model's own precision, or a sharded model): plain racing."""

    name = "fast"  # the --scorer name, recorded in plans

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1, every: int = 1,
                 device: str | None = None, z: float = DEFAULT_Z, fast_dtype: str | None = "bf16",
                 floor_from: int = 8):
        self.view, self.windows, self.batch_size = view, windows, batch_size
        self.z, self.floor_from = z, floor_from
        full_dtype = next(view.model.parameters()).dtype
        if fast_dtype is not None and (view.sharded or FAST_DTYPES[fast_dtype] == full_dtype):
            fast_dtype = None
        self.fast_dtype = fast_dtype
        if fast_dtype is None:
            self.racing = RacingScorer(view, windows, batch_size, every, device, z=z, floor_from=floor_from)
            return
        self.full = BoundaryCache(view, windows, batch_size, every, device)
        self.fast_view = BlockView(fast_copy(view.model, FAST_DTYPES[fast_dtype]))
        self.fast = BoundaryCache(self.fast_view, windows, batch_size, every, device)

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored:
        if self.fast_dtype is None:
            return self.racing.score(removed, candidates, progress, sizes)
        self.full.sync(removed)
        self.fast.sync(removed)
        batches = self.full.batches
        windows = [t.shape[0] for t in batches]
        firsts = [min(self.view.by_name[n].index for n in c) for c in candidates]
        fast_runs: dict[tuple[int, int], torch.Tensor] = {}
        full: dict[int, dict[int, torch.Tensor]] = {}
        ran = {"fast": 0, "full": 0}

        def fast_nll(c: int, b: int) -> torch.Tensor:
            if (c, b) not in fast_runs:
                ran["fast"] += windows[b]
                if progress:
                    progress(windows[b])
                fast_runs[c, b] = self.fast.final_nll(b, removed | candidates[c], firsts[c])
            return fast_runs[c, b]

        def full_nll(c: int, b: int) -> torch.Tensor:
            if b not in full.setdefault(c, {}):
                ran["full"] += windows[b]
                full[c][b] = self.full.final_nll(b, removed | candidates[c], firsts[c])
            return full[c][b]

        # what the race compares: the NLL, or its rise per parameter when the search ranks by that
        fast_look, full_look = per_size(fast_nll, sizes, self.fast), per_size(full_nll, sizes, self.full)

        margin = 0.0

        def margin_from(best: list[int], nb: int) -> float:
            """The step's probe: the best candidates' first batches in full precision too."""
            nonlocal margin
            f = {c: torch.cat([fast_look(c, b) for b in range(nb)]) for c in best}
            F = {c: torch.cat([full_look(c, b) for b in range(nb)]) for c in best}
            margin = SAFETY * largest_error(f, F, best)
            return margin

        fast = race(len(candidates), windows, fast_look, self.z, self.floor_from, margin_from)
        total = sum(windows)
        complete = [c for c in range(len(candidates)) if fast[c].numel() == total]
        leader = min(complete, key=lambda c: (_mean(fast[c]), c))
        # the fast leader always goes on: a non-finite fast score says nothing about the full one
        contenders = sorted({leader} | {c for c in complete if _mean(fast[c] - fast[leader]) <= margin})
        decided = {c: torch.cat([full_look(c, b) for b in range(len(batches))]) for c in contenders}
        exact = {c: torch.cat([full[c][b] for b in range(len(batches))]) for c in contenders}
        seen = {c: torch.cat([fast_runs[c, b] for b in range(len(batches)) if (c, b) in fast_runs])
                for c in range(len(candidates))}
        scores = [ppl_from_nll(exact[c]) if c in exact else ppl_from_nll(seen[c]) for c in range(len(candidates))]
        record = {"fast": self.fast_dtype, "margin": margin,
                  "measured_error": largest_error({c: fast[c] for c in contenders}, decided, contenders),
                  "fast_windows": ran["fast"], "full_windows": ran["full"]}
        return Scored(scores, ran["fast"] + ran["full"], len(candidates) * len(self.windows),
                      [fast[c].numel() for c in range(len(candidates))], decided=sorted(contenders),
                      precision=record)


def largest_error(fast: dict[int, torch.Tensor], full: dict[int, torch.Tensor], among: list[int]) -> float:
    """The largest error, fast minus full precision, of a candidate's mean paired NLL difference from the
    best of `among` (in full precision), over the windows both precisions ran (0.0 for fewer than two)."""
    if len(among) < 2:
        return 0.0
    ref = min(among, key=lambda c: (_mean(full[c]), c))
    errs = [abs(float(((fast[c] - fast[ref]) - (full[c] - full[ref])).mean())) for c in among if c != ref]
    errs = [e for e in errs if math.isfinite(e)]
    return max(errs, default=0.0)


#: --fast-dtype: `auto` is made concrete by `PruneOptions.resolved` (the device's native fast precision, if any)
FAST_CHOICES = ("auto", *FAST_DTYPES, "none")
FAST_DTYPE = Option("fast_dtype", "auto", choices=FAST_CHOICES,
                    help="fast scorer: the precision candidates race in (auto: the device's native fast precision, "
                         "if any; none: race in --dtype, i.e. plain racing)")

register(ScorerEntry("fast", lambda view, windows, o: TwoPrecisionScorer(
    view, windows, o.batch_size, o.cache_every, o.cache_device, z=o.racing_z,
    fast_dtype=None if o.fast_dtype == "none" else o.fast_dtype),
    "two-precision racing: a race in a fast low precision (bf16), near-ties decided in --dtype on every window",
    races=True, like_exhaustive=True, options=(RACING_Z, FAST_DTYPE)))
