"""`timings.json`: a run's wall times, kept beside its plan and out of it (the same inputs give a
byte-identical plan; times differ from machine to machine).

    {"steps": [{"step", "seconds", "validation_seconds"}],          # each saved step, as it was saved
     "machines": [{"from_step", ...blockprune.machine's record}],   # each run part's machine (a resume adds one)
     "dense_validation_seconds", "validation_seconds",              # the overfitting monitor's passes
     "validation_share"}                                            # their share of the search's time

`prune` writes it after every step (`Timings`); `compare` reads what a killed search's saved steps took
(`saved_seconds`), and `blockprune.machine` which machines ran them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import atomic

FILE = "timings.json"


def load(path: Path, resume: bool = True, warn: bool = True) -> dict[str, Any]:
    """The steps' wall times so far. They are not part of the plan's identity, so an unreadable file
    (damaged or edited outside blockprune) restarts the record instead of refusing a good search state."""
    import json

    if not (resume and path.exists()):
        return {"steps": []}
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(timings, dict) and isinstance(timings.get("steps"), list):
            return timings
    except (ValueError, OSError):  # JSON and UTF-8 decoding errors are ValueErrors
        pass
    if warn:
        print(f"blockprune: warning: {path} is unreadable; step timings start again from this step", file=sys.stderr)
    return {"steps": []}


def saved_seconds(folder: Path) -> float:
    """What the steps saved in `folder/timings.json` took, the monitor's passes included (an unreadable file
    counts nothing, as a resumed search restarts its record)."""
    return seconds(load(folder / FILE, warn=False))


def seconds(record: dict[str, Any], upto: int | None = None) -> float:
    """What a loaded timings record's steps took, the monitor's passes included: every step, or those up to
    step `upto` (a search resumed under a new budget keeps only those)."""
    kept = [s for s in record["steps"] if upto is None or s.get("step", 0) <= upto]
    if len(kept) == len(record["steps"]):
        return sum(s.get("seconds", 0.0) for s in kept) + record.get("validation_seconds", 0.0)
    return record.get("dense_validation_seconds", 0.0) + sum(
        s.get("seconds", 0.0) + s.get("validation_seconds", 0.0) for s in kept)


class Timings:
    """A run's timings.json as its steps are saved: started (or resumed) with the machine this part runs on."""

    def __init__(self, folder: Path, resume: bool, machine: dict[str, Any], write: bool = True,
                 steps: int | None = None):
        self.path, self.write = folder / FILE, write
        self.record = load(self.path, resume) if write else {"steps": []}
        if steps is not None:  # the plan resumes after `steps` steps (a greedy search under a new budget
            # searches its last saved steps again): times of steps it no longer holds are dropped
            self.record["steps"] = [s for s in self.record["steps"] if s.get("step", 0) <= steps]
            self.record["machines"] = [m for m in self.record.get("machines", []) if m.get("from_step", 1) <= steps + 1]
        # which machine ran which steps: a resumed run may be on another CPU, whose times differ
        self.record.setdefault("machines", []).append({"from_step": len(self.record["steps"]) + 1, **machine})

    def dense_validation(self, seconds: float | None) -> None:
        """The monitor's pass over the dense model (kept in memory: written with the first step)."""
        self._validation(None, seconds)

    def step(self, step: int, seconds: float, validation_seconds: float | None) -> None:
        """A saved step's time and its monitor pass, written at once."""
        self.record["steps"].append({"step": step, "seconds": round(seconds, 3)})
        self._validation(self.record["steps"][-1], validation_seconds)
        if self.write:
            atomic.write_json(self.path, self.record)

    def _validation(self, step: dict[str, Any] | None, seconds: float | None) -> None:
        """Account the monitor's validation passes: per step (or the dense model's), in total, and as a share
        of the run's search time (validation seconds / (step seconds + validation seconds))."""
        if seconds is None:
            return
        timings = self.record
        if step is None:
            timings["dense_validation_seconds"] = round(timings.get("dense_validation_seconds", 0.0) + seconds, 3)
        else:
            step["validation_seconds"] = round(seconds, 3)
        total = timings.get("dense_validation_seconds", 0.0) + sum(s.get("validation_seconds", 0.0)
                                                                   for s in timings["steps"])
        search = sum(s["seconds"] for s in timings["steps"])
        timings["validation_seconds"] = round(total, 3)
        timings["validation_share"] = round(total / (total + search), 4) if total + search > 0 else None


def step_seconds(folder: Path) -> list[float]:
    """Each step saved in `folder/timings.json`'s own search time, in order, the monitor's passes left out
    (`saved_seconds` adds them); none where the file is missing or unreadable. What a table's search-time
    column sums."""
    return [s.get("seconds", 0.0) for s in load(folder / FILE, warn=False)["steps"]]
