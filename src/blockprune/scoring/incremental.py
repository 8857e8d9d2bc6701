"""Exact incremental evaluation: score candidates from cached hidden states at block boundaries.

Blocks before a candidate compute the same thing for every candidate of a step, so their output is kept:
boundary k holds the input of block k for the current (already pruned) model, for every calibration
window. A candidate whose first block is s runs only blocks from the nearest stored boundary <= s, then
the head. After a removal only the boundaries past the removed block are recomputed.

Memory: every stored boundary costs windows x seqlen x hidden x dtype bytes; with `every=n` only every
n-th boundary is kept (blocks between are recomputed per candidate), so the cache holds
1 + ceil(2L / n) boundaries. `device` puts the cache elsewhere than the model (e.g. "cpu"), or on disk:
"disk" or "disk:FOLDER" stores each boundary as a memory-mapped file (in FOLDER, else the system's temporary
folder), unlinked as soon as it is mapped, so its space returns when the boundary is dropped, and a killed
run leaves no file behind; the values are the same bytes, so the scores are the same.
Example: a 7B model with L=32 layers and hidden size 4096 with 256 x 2048 calibration tokens in bf16 needs 4 GiB per
boundary; `every=8` keeps 9 of them (36 GiB), which fits one 80 GB GPU beside the 13.5 GB model.

The next step's cache is the chosen candidate's own run: the boundaries it passed are the new model's. So
while candidates are scored, each batch keeps the boundaries of the candidate leading on the batches up to
it (lowest NLL sum over batches 0..b), and a sync to that candidate's removal takes them instead of running
the blocks again. This holds at most one more cache's worth, only where free memory on the cache's device
allows it (never when the cache lives off the model's device or the model is sharded: the copies would
cost what they save)."""
from __future__ import annotations

import math
import os
import tempfile
from typing import AbstractSet, Sequence

import torch

from ..data import Windows
from ..window_nll import ppl_from_nll
from ..view import BlockView, Prepared
from .base import Progress, Scored
from .registry import ScorerEntry, register


class BoundaryCache:
    """Hidden states of the current pruned model at (every n-th) block boundary, per batch of windows."""

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1, every: int = 1,
                 device: str | torch.device | None = None):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.view = view
        self.every = 2 * math.ceil(every / 2) if view.parallel else every  # parallel layers: layer boundaries only
        self.folder = None  # memory-mapped files here: --cache-device disk
        if isinstance(device, str) and device.split(":")[0] == "disk":
            self.folder = device.partition(":")[2] or tempfile.gettempdir()
            device = "cpu"
        self.device = torch.device(device) if device is not None else view.device
        self.batches = [windows.ids[i:i + batch_size] for i in range(0, len(windows), batch_size)]
        self.preps: list[Prepared] = [view.prepare(ids) for ids in self.batches]
        self.states: list[dict[int, torch.Tensor]] = [{0: self._store(p.hidden)} for p in self.preps]
        for p, st in zip(self.preps, self.states):  # the embeddings' output is kept once: where the cache is
            p.hidden = st[0]
        self.removed: frozenset[str] | None = None
        self.n_blocks = len(view.blocks)
        self.keep_leader = self.device == view.device and not view.sharded and self.folder is None
        self._sums: dict[frozenset[str], float] = {}  # NLL sum over the batches each candidate has run
        self._leader: dict[int, tuple[float, frozenset[str], dict[int, torch.Tensor]]] = {}  # batch -> kept run

    def _store(self, h: torch.Tensor) -> torch.Tensor:
        """`h` where the cache keeps it: on its device, or copied into a memory-mapped file."""
        if self.folder is None:
            return h.to(self.device)
        return mapped_copy(h, self.folder)

    def stored_at_or_before(self, index: int) -> int:
        return (index // self.every) * self.every

    def sync(self, removed: AbstractSet[str]) -> int:
        """Bring the cache to the model with `removed` masked; returns how many block-runs it cost."""
        removed = frozenset(removed)
        if self.removed == removed:
            return 0
        changed = (removed ^ self.removed) if self.removed is not None else frozenset()
        first = min((self.view.by_name[n].index for n in changed), default=0)
        start = self.stored_at_or_before(first)
        cost = 0
        for b, states in enumerate(self.states):
            for k in [k for k in states if k > start]:
                del states[k]
            kept = self._leader.get(b)
            if kept is not None and kept[1] == removed:
                states.update(kept[2])
                continue
            for stop, h in self._segments(b, removed, start):
                states[stop] = self._store(h)
            cost += self.n_blocks - start
        self.removed = removed
        self._sums, self._leader = {}, {}
        return cost

    def _segments(self, batch: int, removed: frozenset[str], start: int):
        """Run one batch from stored boundary `start` to the end, a stored boundary at a time; yields each
        (boundary, hidden state). The blocks run as they would in one call from `start`: same result."""
        h = self.states[batch][start].to(self.view.device)
        for k in range(start, self.n_blocks, self.every):
            stop = min(k + self.every, self.n_blocks)
            h = self.view.run(h, self.preps[batch], removed, k, stop)
            yield stop, h

    def final_nll(self, batch: int, removed: AbstractSet[str], first_block: int) -> torch.Tensor:
        """Per-window NLL of one batch with `removed` masked, running only from the boundary before `first_block`.

        Candidates are expected to run their batches in order (0, 1, ...), as both scorers do: the running
        NLL sums of candidates on the same batch then cover the same windows."""
        removed = frozenset(removed)
        passed: dict[int, torch.Tensor] = {}
        for stop, h in self._segments(batch, removed, self.stored_at_or_before(first_block)):
            if self.keep_leader:
                passed[stop] = h
        nll = self.view.window_nll(h, self.batches[batch])
        if self.keep_leader:
            self._keep_if_leading(batch, removed, float(nll.sum()), passed)
        return nll

    def current_nll(self, batch: int) -> torch.Tensor:
        """Per-window NLL of one batch for the model the cache holds (only the blocks after the last stored
        boundary run); never kept as a leader, it is no candidate."""
        h = self.states[batch][self.stored_at_or_before(self.n_blocks)].to(self.view.device)
        h = self.view.run(h, self.preps[batch], self.removed, self.stored_at_or_before(self.n_blocks), self.n_blocks)
        return self.view.window_nll(h, self.batches[batch])

    def _keep_if_leading(self, batch: int, removed: frozenset[str], nll_sum: float,
                         passed: dict[int, torch.Tensor]) -> None:
        total = self._sums[removed] = self._sums.get(removed, 0.0) + nll_sum
        kept = self._leader.get(batch)
        if not math.isfinite(total) or (kept is not None and kept[0] <= total):
            return
        if kept is None and not _room_for(passed.values(), self.device):
            return
        self._leader[batch] = (total, removed, passed)


def mapped_copy(h: torch.Tensor, folder: str | os.PathLike) -> torch.Tensor:
    """A copy of `h` in a memory-mapped file in `folder`; the file is unlinked once mapped (its pages live
    as long as the tensor does, and nothing is left behind)."""
    fd, path = tempfile.mkstemp(prefix="boundary-", suffix=".bin", dir=folder)
    try:
        os.ftruncate(fd, h.numel() * h.element_size())
        t = torch.from_file(path, shared=True, size=h.numel(), dtype=h.dtype)
    finally:
        os.close(fd)
        os.unlink(path)
    return t.view(h.shape).copy_(h.detach())


def _room_for(tensors, device: torch.device) -> bool:
    """Whether keeping `tensors` leaves at least as much again free on `device`."""
    need = 2 * sum(t.numel() * t.element_size() for t in tensors)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] > need
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") > need
        except (ValueError, OSError):
            return False
    return False


class IncrementalScorer:
    """Same scores as `PlainScorer` (up to float rounding), from cached block-boundary states."""

    name = "incremental"

    def __init__(self, view: BlockView, windows: Windows, batch_size: int = 1, every: int = 1,
                 device: str | None = None):
        self.view, self.windows, self.batch_size = view, windows, batch_size
        self.cache = BoundaryCache(view, windows, batch_size, every, device)

    def first_index(self, candidate: frozenset[str]) -> int:
        return min(self.view.by_name[n].index for n in candidate)

    def score(self, removed: frozenset[str], candidates: Sequence[frozenset[str]],
              progress: Progress | None = None, sizes: Sequence[int] | None = None) -> Scored:
        # every score is complete, so the search ranks by any criterion itself: `sizes` changes nothing here
        self.cache.sync(removed)
        scores = []
        for c in candidates:
            first = self.first_index(c)
            nll = []
            for b in range(len(self.cache.batches)):
                nll.append(self.cache.final_nll(b, removed | c, first))
                if progress:
                    progress(self.cache.batches[b].shape[0])
            scores.append(ppl_from_nll(torch.cat(nll)))
        n = len(candidates) * len(self.windows)
        return Scored(scores, n, n)


register(ScorerEntry("incremental", lambda view, windows, o: IncrementalScorer(view, windows, o.batch_size,
                                                                             o.cache_every, o.cache_device),
                     "exact, from cached block-boundary states", like_exhaustive=True))
