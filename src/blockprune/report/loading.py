"""The folders a report is given, read: a run (plan.json, maybe its eval/), an evaluation (eval.json) or a
healed checkpoint (heal.json), each once, each with a label usable as a file name."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..plan import Plan


@dataclass
class LoadedFolder:
    """One folder given to the report: a run (plan, maybe its evaluation) or an evaluation alone."""

    label: str
    path: Path
    plan: Plan | None = None
    evaluation: dict[str, Any] | None = None
    healing: dict[str, Any] | None = None  # a `blockprune heal` folder's heal.json
    figures: dict[str, str] = field(default_factory=dict)
    sources: frozenset[Path] = frozenset()  # the plan / eval / heal files it was read from


def _read_eval(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}); re-run `blockprune eval`") from e


def load_folder(path: str | os.PathLike) -> LoadedFolder:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; give run folders (plan.json) or eval folders (eval.json)")
    plan = Plan.load(path) if (path / "plan.json").exists() else None
    ev = next((p for p in (path / "eval.json", path / "eval" / "eval.json") if p.exists()), None)
    healing = _read_eval(path / "heal.json") if (path / "heal.json").exists() else None
    if plan is None and ev is None and healing is None:
        raise UserError(f"{path} holds neither plan.json, eval.json nor heal.json")
    sources = frozenset(p.resolve() for p in (path / "plan.json", ev, path / "heal.json") if p and p.exists())
    return LoadedFolder(path.resolve().name, path, plan, _read_eval(ev) if ev else None, healing, sources=sources)


def distinct(entries: list[LoadedFolder]) -> list[LoadedFolder]:
    """Each subject once: a run folder already brings its eval/, so `report RUN RUN/eval` (or a folder given
    twice) lists it once. An entry is dropped when another brings every file it does (the earlier of equals)."""
    return [e for i, e in enumerate(entries)
            if not any(e.sources < o.sources or (e.sources == o.sources and j < i) for j, o in enumerate(entries))]


def unique_labels(entries: list[LoadedFolder]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", e.label) or "run"
        seen[base] = seen.get(base, 0) + 1
        e.label = base if seen[base] == 1 else f"{base}-{seen[base]}"
