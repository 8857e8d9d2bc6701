"""Many processes: candidates split across ranks, scores gathered so every rank agrees.

Launch with `torchrun --nproc_per_node N -m blockprune.cli prune ...`. Every rank holds a model replica and
the calibration windows; rank r scores candidates r, r+N, ...; an all-gather gives every rank the full score
list, so each makes the same choice and only rank 0 writes files. With an exact scorer the plan equals a
single process's. With racing each rank races its own share of candidates: the removals
match one process's (within the race's confidence), the per-step race records do not."""
from __future__ import annotations

import os
from typing import Sequence

import torch.distributed as dist

from .base import Progress, Scored


def init_from_env() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        import torch
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


class SplitScorer:
    """Wraps any scorer: this rank scores its share of the candidates, then all ranks exchange scores."""

    def __init__(self, inner, rank: int, world: int):
        self.inner, self.rank, self.world = inner, rank, world
        self.name = f"{getattr(inner, 'name', 'scorer')} x{world}"

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @property
    def metric(self) -> str:
        """What the scores are (a method records the metric that ranked its removals: --metric bi, ...)."""
        return getattr(self.inner, "metric", "ppl")

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored:
        mine = list(range(self.rank, len(candidates), self.world))
        # sizes only when given, as the search passes them: the metric scorers take none
        part = self.inner.score(removed, [candidates[i] for i in mine], progress,
                                **({} if sizes is None else {"sizes": [sizes[i] for i in mine]}))
        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, (mine, part))
        scores = [0.0] * len(candidates)
        windows = [0] * len(candidates)
        evaluated = exhaustive = 0
        any_partial = False
        decided: list[int] | None = None
        precision: dict | None = None
        for idx, sc in gathered:
            evaluated += sc.evaluated_windows
            exhaustive += sc.exhaustive_windows
            any_partial |= sc.windows is not None
            for j, i in enumerate(idx):
                scores[i] = sc.scores[j]
                windows[i] = sc.windows[j] if sc.windows is not None else -1
            if sc.decided is not None:  # each rank decided its own share's near-ties in full precision
                decided = sorted((decided or []) + [idx[j] for j in sc.decided])
                precision = _merge_precision(precision, sc.precision)
        if any_partial:
            full = max(windows)
            windows = [full if w == -1 else w for w in windows]
        return Scored(scores, evaluated, exhaustive, windows if any_partial else None, decided, precision)


def _merge_precision(a: dict | None, b: dict) -> dict:
    """Two ranks' two-precision records as one: window counts add up, margins and errors take the larger."""
    if a is None:
        return dict(b)
    return {**a, "margin": max(a["margin"], b["margin"]), "measured_error": max(a["measured_error"], b["measured_error"]),
            "fast_windows": a["fast_windows"] + b["fast_windows"], "full_windows": a["full_windows"] + b["full_windows"]}
