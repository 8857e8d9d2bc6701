"""The one way into the formats: a plan's model becomes a `Job`, `auto` becomes a format name, the
format's refusal becomes a one-line `UserError`, and its writer fills a staging folder that is moved into
place only when complete."""
from __future__ import annotations

from pathlib import Path
from typing import AbstractSet, Any

from torch import nn

from .. import atomic
from ..errors import UserError
from ..view import BlockView
from .common import Job, earlier_pruning, width_pruned
from .registry import AUTO, AUTO_ORDER, FORMATS, choices


def choose(job: Job) -> str:
    """The format `auto` writes: the first of `AUTO_ORDER` that can express the job."""
    return next((name for name in AUTO_ORDER if FORMATS[name].refusal(job) is None), AUTO_ORDER[-1])


def choose_format(removed_blocks: AbstractSet[str]) -> str:
    """The format `auto` writes for a depth plan removing `removed_blocks` from a dense model."""
    return choose(Job(None, frozenset(removed_blocks), {}))


def export(model: nn.Module, removed: AbstractSet[str], out: str | Path, *, fmt: str = AUTO,
           meta: dict[str, Any] | None = None, tokenizer=None, options: dict[str, Any] | None = None) -> Path:
    """Write the pruned checkpoint of `model` without the `removed` blocks to `out` (atomically).

    `options` are the format's own settings (gguf: `outtype`)."""
    _check_known(fmt)
    removed = frozenset(removed)
    try:
        BlockView(model).check_names(removed)
    except ValueError as e:
        raise UserError(str(e)) from e
    if width_pruned(model):  # per-layer widths: only the width modeling file rebuilds them
        job = Job(model, removed, meta or {}, tokenizer, width="pruned", options=options or {})
    else:
        # a checkpoint pruned before lacks its earlier blocks: every format writes them as removed too
        removed |= frozenset(earlier_pruning(model).get("removed", ()))
        job = Job(model, removed, meta or {}, tokenizer, options=options or {})
    return _write(job, fmt, Path(out))


def export_width(model: nn.Module, out: str | Path, *, fmt: str = AUTO, meta: dict[str, Any] | None = None,
                 tokenizer=None, options: dict[str, Any] | None = None) -> Path:
    """Write a width plan's narrower copy of its base model to `out` (atomically)."""
    _check_known(fmt)
    return _write(Job(model, frozenset(), meta or {}, tokenizer, width="narrowed", options=options or {}), fmt,
                  Path(out))


def _check_known(fmt: str) -> None:
    if fmt not in choices():
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(choices())}")


def options_refusal(fmt: str, options: dict[str, Any]) -> str | None:
    """Why `fmt` cannot take `options` (settings of another format), or None."""
    takes = FORMATS[fmt].options if fmt in FORMATS else ()
    foreign = sorted(k for k, v in options.items() if v is not None and k not in takes)
    if not foreign:
        return None
    owners = [n for n, f in FORMATS.items() if set(foreign) & set(f.options)]
    only = f" (only --format {', '.join(owners)} does)" if owners else ""
    return f"--format {fmt} takes no {', '.join('--' + k for k in foreign)}{only}"


def out_refusal(fmt: str, out: Path) -> str | None:
    """Why `out` cannot take `fmt`'s output (a one-file format given an existing folder), or None."""
    if fmt in FORMATS and FORMATS[fmt].file and out.is_dir():
        return f"--out {out} is a folder; --format {fmt} writes one file: give a file path"
    return None


def _write(job: Job, fmt: str, out: Path) -> Path:
    chosen = FORMATS[choose(job) if fmt == AUTO else fmt]
    why = options_refusal(chosen.name, dict(job.options)) or out_refusal(chosen.name, out) or chosen.refusal(job)
    if why is not None:
        raise UserError(why)
    if chosen.file:
        with atomic.staged_file(out) as tmp:
            chosen.write(job, tmp)
        return out
    with atomic.staged_dir(out) as tmp:
        chosen.write(job, tmp)
    return out
