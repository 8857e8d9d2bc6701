"""What `--tasks` names, resolved and checked before any model loads.

A task is a perplexity set (`wikitext2`, `ptb`, or `ppl:FILE` for any local .txt/.json/.jsonl text) or an
lm-eval task: one defined by a YAML in an `--include-path` folder (lm-eval's own convention, read by its
own TaskManager, and taking precedence over a built-in task of the same name), one of lm-eval's built-in
tasks read from an offline copy in the data folder (`eval/TASK_SPLIT.jsonl`, the split it evaluates), or
one read from the hub. `prepare` builds every lm-eval task (which loads its documents), so a wrong name, a
YAML lm-eval rejects or a missing file fails in seconds, before the model loads."""
from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data import data_dir as resolve_data_dir
from ..data import load_rows, recorded_path
from ..errors import UserError
from .harness import STANDARD, config_with_local_split, standard_config, task_manager
from .perplexity import PPL_TASKS

PPL_PREFIX = "ppl:"
TEXT_SUFFIXES = (".txt", ".json", ".jsonl")


def is_perplexity(task: str) -> bool:
    return task in PPL_TASKS or task.startswith(PPL_PREFIX)


def ppl_source(task: str) -> str:
    """What `blockprune.data` reads for a perplexity task: a built-in set's name or the file's path."""
    return task[len(PPL_PREFIX):] if task.startswith(PPL_PREFIX) else task


def check_text_file(task: str) -> None:
    path = Path(ppl_source(task)).expanduser()
    if not path.is_file():
        raise UserError(f"{task}: no such file {path}; give ppl:PATH with a local .txt, .json or .jsonl text")
    if path.suffix not in TEXT_SUFFIXES:
        raise UserError(f"{task}: perplexity reads .txt, .json or .jsonl text, "
                        f"not {path.suffix or 'a file without a suffix'}")
    load_rows(str(path))  # unreadable, not UTF-8 or malformed rows fail here, each with its own message


def eval_split(cfg: dict[str, Any]) -> str | None:
    """The split an lm-eval task scores: its test split if it has one, else its validation split."""
    return cfg.get("test_split") or cfg.get("validation_split")


def offline_name(task: str, cfg: dict[str, Any] | None) -> str | None:
    """Where in the data folder a built-in task's offline copy is searched for."""
    if task in STANDARD:
        return STANDARD[task][1]
    split = eval_split(cfg or {})
    return f"eval/{task}_{split}.jsonl" if split else None


@functools.lru_cache(maxsize=4)
def custom_manager(include_path: tuple[Path, ...]):
    """lm-eval's TaskManager over the include folders alone (indexing them takes milliseconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path), include_defaults=False)


def check_include_path(include_path: Sequence[str | os.PathLike] | str | os.PathLike | None) -> tuple[Path, ...]:
    """Each folder exists and every task YAML in it reads as lm-eval reads it (includes followed)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    if include_path is None:
        return ()
    folders = [include_path] if isinstance(include_path, (str, os.PathLike)) else list(include_path)
    out = []
    for f in folders:
        d = Path(f).expanduser()
        if not d.is_dir():
            raise UserError(f"--include-path {d} is not a folder; give a folder of lm-eval task YAMLs")
        yamls = sorted(d.glob("**/*.yaml"))
        if not yamls:
            raise UserError(f"--include-path {d} holds no .yaml file; lm-eval task definitions end in .yaml")
        for y in yamls:
            try:
                load_yaml(y, resolve_func=False, recursive=True)
            except Exception as e:  # noqa: BLE001 - YAML syntax, a missing include, not a mapping: one answer
                raise UserError(f"lm-eval cannot read the task YAML {y} (in --include-path {d}): "
                                f"{_one_line(e)}; fix it or move it out of the folder") from e
        out.append(d.resolve())
    return tuple(out)


@dataclass
class Prepared:
    """An evaluation's tasks, checked: perplexity sources, and each lm-eval task's Task objects (a
    group or tag gives several) with where its documents come from."""

    tasks: list[str]
    include_path: tuple[Path, ...] = ()
    harness: dict[str, list] = field(default_factory=dict)  # name -> lm-eval Task objects, ready to run
    origin: dict[str, str] = field(default_factory=dict)  # lm-eval task name -> YAML, local copy or hub

    @property
    def perplexity(self) -> list[str]:
        return [t for t in self.tasks if is_perplexity(t)]


def prepare(tasks: Sequence[str], *, include_path=None, data_dir: str | os.PathLike | None = None) -> Prepared:
    """Resolve and check every task; build the lm-eval ones (their documents loaded)."""
    tasks = [t.strip() for t in tasks if t.strip()]
    if not tasks:
        raise UserError("--tasks is empty; name at least one task")
    if len(set(tasks)) != len(tasks):
        raise UserError("--tasks names a task twice")
    folders = check_include_path(include_path)
    d = resolve_data_dir(data_dir)
    for t in tasks:
        if t.startswith(PPL_PREFIX):
            check_text_file(t)
    names = [t for t in tasks if not is_perplexity(t)]
    custom = custom_manager(folders) if folders else None
    elsewhere = [t for t in names if custom is None or t not in custom.all_tasks]
    # lm-eval's full index takes seconds to build: only when a name is neither custom nor one of the five
    builtin = task_manager(True) if any(t not in STANDARD for t in elsewhere) else None
    unknown = [t for t in elsewhere if t not in STANDARD and t not in builtin.all_tasks]
    if unknown:
        raise UserError(_unknown(unknown[0], folders, custom, builtin))
    prepared = Prepared(tasks, folders)
    for t in names:
        if custom is not None and t in custom.all_tasks:
            entry = custom.task_index[t]
            where = (recorded_path(entry.yaml_path) if entry.yaml_path else
                     f"tag in --include-path {', '.join(map(recorded_path, folders))}")
            prepared.harness[t] = _build(lambda: list(custom.load([t])["tasks"].values()), t,
                                         f"lm-eval rejects the task {t} ({where})", "fix the YAML or its "
                                         "data_files (a relative path is read from the working directory)")
            prepared.origin[t] = where
        else:
            prepared.harness[t], prepared.origin[t] = _builtin(t, d, builtin)
    return prepared


def _builtin(task: str, d: Path | None, builtin) -> tuple[list, str]:
    from lm_eval.api.task import ConfigurableTask

    entry = builtin.task_index.get(task) if builtin is not None else None
    cfg = standard_config(task) if task in STANDARD else _leaf_config(entry)
    rel = offline_name(task, cfg)
    if d is not None and rel is not None and cfg is not None and (d / rel).exists():
        split = STANDARD[task][2] if task in STANDARD else eval_split(cfg)
        local = config_with_local_split(cfg, str(d / rel), split)
        built = _build(lambda: [ConfigurableTask(config=local)], task,
                       f"could not read the offline copy {d / rel} of {task}",
                       "check that it is the JSONL of the hub split, one document a line")
        return built, recorded_path(d / rel)
    where = (f"or put an offline copy at {d / rel}" if d is not None else
             f"or pass --data-dir DIR holding {rel}") if rel else "(it has no single split to copy offline)"
    manager = builtin if builtin is not None else task_manager(True)
    return _build(lambda: list(manager.load([task])["tasks"].values()), task,
                  f"could not load the documents of {task} from the hub", f"connect to the hub {where}"), \
        "hub (lm-eval's standard dataset)"


def _leaf_config(entry) -> dict[str, Any] | None:
    """A built-in single task's config (includes merged, functions resolved); None for groups and tags."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    if entry is None or entry.kind != Kind.TASK or entry.yaml_path is None:
        return None
    cfg = load_yaml(entry.yaml_path, resolve_func=True)
    cfg.pop("tag", None)
    return cfg


def _build(make, task: str, what: str, todo: str) -> list:
    try:
        built = make()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - lm-eval and datasets raise many kinds; the user needs the one line
        raise UserError(f"{what}: {type(e).__name__}: {_one_line(e)}; {todo}") from e
    if not built:
        raise UserError(f"{task} names no task to run (an empty group or tag)")
    return built


def _unknown(task: str, folders: tuple[Path, ...], custom, builtin) -> str:
    known = (list(PPL_TASKS) + list(STANDARD) + (custom.all_tasks if custom else [])
             + (builtin.all_tasks if builtin else []))
    close = difflib.get_close_matches(task, sorted(set(known)), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    if Path(task).suffix in TEXT_SUFFIXES:
        hint += f"; for the perplexity of a local text write {PPL_PREFIX}{task}"
    where = [f"not a perplexity set (wikitext2, ptb, {PPL_PREFIX}FILE)"]
    where += [f"not defined in --include-path {', '.join(map(str, folders))}"] if folders else []
    return f"unknown task {task!r}: {', '.join(where)}, not an lm-eval task (see `lm-eval ls tasks`){hint}"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")
