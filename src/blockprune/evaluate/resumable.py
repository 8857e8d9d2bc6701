"""Evaluation that resumes: a folder's `eval.json` holds every task asked for under the settings asked for.

A record made with the same settings keeps its tasks and only the missing ones are evaluated, merged into
it; an evaluation killed midway (its part in `.eval-part/eval.json`) keeps the tasks it finished; a folder
whose pruned model is identical to one already evaluated takes that one's record. `compare` evaluates each
method's folder and the dense model this way.

The settings a record must match are `Evaluator`'s: `seqlen`, `max_windows`, `limit` and `num_fewshot`
(`make_evaluator`), compared key by key with the record's `settings`; a record made with others is
evaluated again, whole."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import atomic
from .table import average

# target (a run folder or the dense model spec), tasks, the folder its part is written to -> eval record
# (`blockprune.evaluate`'s eval.json shape)
Evaluator = Callable[[str, Sequence[str], Path], dict]
PART = ".eval-part"  # where an evaluation in progress writes; removed once merged


def make_evaluator(*, seqlen: int, max_windows: int | None, limit: int | None, data_dir=None, include_path=None,
                   num_fewshot: int = 0, dtype: str = "fp32", device: str = "cpu", batch_size: int = 16,
                   progress: bool = True) -> tuple[Evaluator, dict[str, Any]]:
    """`blockprune.evaluate` on a run folder (masked in memory) or a model, and the settings it binds
    (a folder evaluated with other settings, few-shot included, is evaluated again)."""
    settings = {"seqlen": seqlen, "max_windows": max_windows, "limit": limit, "num_fewshot": num_fewshot}

    def run(target: str, tasks: Sequence[str], out: Path) -> dict:
        from . import evaluate, load_subject

        subject = load_subject(target, dtype, device)
        return evaluate(subject, tasks, out=out, seqlen=seqlen, max_windows=max_windows, limit=limit,
                        data_dir=data_dir, include_path=include_path, num_fewshot=num_fewshot,
                        batch_size=batch_size, with_cost=False, progress=progress)
    return run, settings


def matches(record: dict | None, settings: dict[str, Any]) -> bool:
    """Whether `record` was made with `settings` (each key's value as recorded)."""
    return bool(record) and {k: record.get("settings", {}).get(k) for k in settings} == settings


def missing_tasks(record: dict | None, tasks: Sequence[str], settings: dict[str, Any]) -> list[str]:
    """The `tasks` an eval record lacks (all of them when it was made with other `settings`)."""
    if not matches(record, settings):
        return list(tasks)
    have = set(record.get("perplexity", {})) | set(record.get("zero_shot", {}))
    return [t for t in tasks if t not in have]


def evaluate_folder(target: str, sub: Path, tasks: Sequence[str], evaluator: Evaluator, settings: dict[str, Any],
                    reuse: dict[tuple, Path], removed: tuple | None) -> dict:
    """`sub/eval.json` with every task in `tasks`: kept when present, copied from a folder whose pruned
    model is identical (`Plan.outcome.key`), else evaluated (only the tasks still missing, merged into what
    is there)."""
    path, part = sub / "eval.json", sub / PART
    record = read(path)
    interrupted = read(part / "eval.json")  # an evaluation killed midway keeps the tasks it finished
    if interrupted and len(missing_tasks(interrupted, tasks, settings)) < len(tasks):
        record = merge(record if matches(record, settings) else None, interrupted, tasks, settings)
        atomic.write_json(path, record)
    missing = missing_tasks(record, tasks, settings)
    if not missing:
        return record
    twin = reuse.get(removed) if removed is not None else None
    if twin is not None and twin != sub and not missing_tasks(read(twin / "eval.json"), tasks, settings):
        record = {**read(twin / "eval.json"), "same_removal_as": twin.name}
        atomic.write_json(path, record)
        shutil.rmtree(part, ignore_errors=True)  # an interrupted evaluation of its own is not needed
        return record
    new = evaluator(target, missing, part)
    record = merge(record if len(missing) < len(tasks) else None, new, tasks, settings)
    atomic.write_json(path, record)
    shutil.rmtree(part, ignore_errors=True)
    return record


def merge(record: dict | None, new: dict, tasks: Sequence[str], settings: dict[str, Any]) -> dict:
    """`new`'s task results added to `record` (None: `new` alone), average recomputed, settings bound; the
    machines of both parts kept (each lists what it measured: the parts may have run on different CPUs)."""
    if record is None:
        record = {**new, "perplexity": {}, "zero_shot": {}}
    machines = record.get("machines", [])  # an interrupted part merged twice is listed once
    record["machines"] = machines + [m for m in new.get("machines", []) if m not in machines]
    record["perplexity"].update(new.get("perplexity", {}))
    record["zero_shot"].update(new.get("zero_shot", {}))
    record["average"] = average(record["zero_shot"])
    record["settings"] = {**record.get("settings", {}), **settings, "tasks": list(tasks)}
    return record


def read(path: Path) -> dict | None:
    """A JSON record, or None where there is none."""
    return json.loads(path.read_text()) if path.exists() else None
