"""Crash-safe writes: every file blockprune writes goes through here (temporary file, fsync, rename)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from safetensors import SafetensorError

from .errors import UserError


_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; ours are ordinary files
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"could not write {path}: {e.strerror or e}; free some space or choose another --out") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def staged_file(final: str | Path) -> Iterator[Path]:
    """A temporary file next to `final` for a writer that wants a path (not bytes), renamed to `final` only
    when the writer returns: a crash or error leaves `final` as it was and no partial file beside it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)  # left by a process killed mid-write
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; ours are ordinary files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {final}: {e.strerror or e}; free some space or choose another --out") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    # sort_keys and a fixed float repr make plans byte-identical across identical runs
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, dumps_json(obj))


def check_writable(folder: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, an output folder this process cannot write: create it (and any missing
    parents), write and delete a probe file in it, then remove the folders it created, so a refusal
    (this one or any later one) leaves nothing behind. Permission bits alone cannot tell: root passes
    `os.access` on /proc, where nothing can be created."""
    folder = Path(folder)
    created: list[Path] = []
    try:
        missing, p = [], folder
        while not (p.exists() or p.is_symlink()) and p != p.parent:
            missing.append(p)
            p = p.parent
        if p.exists() and not p.is_dir():
            what = "is a file" if p == folder else f"is inside {p}, a file"
            raise UserError(f"{option} {folder} {what}, not a folder; choose another {option}")
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        fd, probe = tempfile.mkstemp(prefix=".blockprune-probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write to {option} {folder} ({e.strerror or e}); choose another {option}") from None
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass


def _reason(e: Exception) -> str:
    """What went wrong, in words: an OSError's strerror, or the OS message inside a safetensors error
    (its writer reports a full disk as `SafetensorError("... IoError(Os { ..., message: "No space ..." })")`)."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    found = re.search(r'message: "([^"]+)"', str(e))
    return found.group(1) if found else str(e)


def remove_stale(path: str | Path) -> None:
    """Delete the temporary files a process killed inside `write_bytes` left next to `path`.

    Only for a file no other live process is writing (e.g. a run's plan.json when the run is resumed)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


def recover(final: str | Path) -> None:
    """Finish what a process killed inside `staged_dir`'s two-move swap left behind.

    Killed between the moves, `final` is gone and `.NAME.old` holds its previous complete version: put
    it back. Killed after both, `.NAME.old` is a leftover: remove it."""
    final = Path(final)
    old = final.with_name(f".{final.name}.old")
    if not old.exists():
        return
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, final)
        _fsync_dir(final.parent)


def _follow_umask(root: Path) -> None:
    """Give a staged folder the permissions of any other folder and file the user makes: mkdtemp makes
    it 0700, and transformers writes model.safetensors 0600, either of which would keep a checkpoint
    meant for sharing or serving from other users."""
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        executable = p.is_dir() or os.stat(p).st_mode & 0o111
        os.chmod(p, (0o777 if executable else 0o666) & ~_UMASK)


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder next to `final` and move it into place only when complete.

    A crash or error leaves `final` as it was (absent, or the previous complete version)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        _follow_umask(tmp)
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(final.parent)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as its own error, not an OSError
        shutil.rmtree(tmp, ignore_errors=True)
        recover(final)  # failed between the two moves: the previous version goes back
        raise UserError(f"could not write {final}: {_reason(e)}; free some space or choose another output folder") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        recover(final)
        raise
