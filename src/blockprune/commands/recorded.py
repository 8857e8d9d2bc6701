"""A subcommand's arguments without importing what they are read from.

Many choices and defaults come from the registries (methods, scorers and metrics, export formats) and
`PruneOptions`, whose modules import torch and transformers: seconds under load, for `--help` or an
argument error that needs none of it. So `add(module, parser)` records the `add_argument` calls a
command's `add_arguments` makes, as data, in a cache keyed by this package's source files (a hash of
every .py file's path and content: any edit, a new method or format file included, makes a new key),
and replays them on the next run. A call it cannot record as data (a callable `type` that is not a
module-level name, such as a lambda) replays as a stand-in that builds the real argument when a value
reaches it, i.e. only when that option is given.

In a process that has imported torch already (tests, notebooks) the arguments are built directly: the
registries may hold entries registered at runtime, and there is nothing left to save."""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

FORMAT = 1
_PACKAGE = Path(__file__).resolve().parents[1]


def add(module, parser) -> None:
    """`module.add_arguments(parser)`, replayed from the cache where it can be."""
    if _torch_loaded():
        module.add_arguments(parser)
        return
    path = _cache_file()
    cached = _read(path) or {}
    calls = cached.get(module.NAME)
    if calls is not None:
        import argparse

        try:  # first into a scratch parser: a damaged cache must not leave half its arguments behind
            _replay(argparse.ArgumentParser(add_help=False), calls, module)
        except Exception:  # a cache this code cannot replay: build directly
            calls = None
        if calls is not None:
            _replay(parser, calls, module)
            return
    log: list = []
    module.add_arguments(_Recorder(parser, log))
    if module.NAME in cached or path is None:  # unrecordable (null), or nowhere to keep it
        return
    entries = {**cached, module.NAME: _encode(log)}
    # where that imported the registries (torch with them), record every other command too, so one slow
    # run after an install or an edit makes all of them fast (a fresh process: nothing registered at
    # runtime to leak in)
    import argparse

    from . import load_all

    for other in load_all() if _torch_loaded() else ():
        if other.NAME not in entries:
            log = []
            try:
                other.add_arguments(_Recorder(argparse.ArgumentParser(add_help=False), log))
            except Exception:
                continue
            entries[other.NAME] = _encode(log)
    _write(path, entries)


def _torch_loaded() -> bool:
    return "torch" in sys.modules


# -- recording ---------------------------------------------------------------------------------------------

class _Recorder:
    """Stands in for a parser or an argument group: forwards every call and logs it."""

    def __init__(self, target, log: list):
        self._target, self._log = target, log

    def add_argument(self, *args, **kwargs):
        self._log.append(["argument", list(args), kwargs])
        return self._target.add_argument(*args, **kwargs)

    def add_argument_group(self, *args, **kwargs):
        inner: list = []
        self._log.append(["group", list(args), kwargs, inner])
        return _Recorder(self._target.add_argument_group(*args, **kwargs), inner)

    def add_mutually_exclusive_group(self, **kwargs):
        inner: list = []
        self._log.append(["exclusive", [], kwargs, inner])
        return _Recorder(self._target.add_mutually_exclusive_group(**kwargs), inner)

    def __getattr__(self, name):  # anything else a command asks of its parser: not replayable as data
        self._log.append(["other", [name], {}])
        return getattr(self._target, name)


class _Unrecordable(Exception):
    pass


def _encode(log: list) -> list | None:
    try:
        return [_encode_call(c) for c in log]
    except _Unrecordable:
        return None


def _encode_call(call: list) -> list:
    kind, args, kwargs = call[0], call[1], call[2]
    if kind == "other":
        raise _Unrecordable
    out = [kind, [_value(a) for a in args], {k: _kwarg(k, v, args) for k, v in kwargs.items()}]
    if kind != "argument":
        out.append([_encode_call(c) for c in call[3]])
    return out


def _kwarg(key: str, value: Any, args: list) -> Any:
    if key == "type" and callable(value):
        return {"callable": _reference(value)}
    if key == "choices" and value is not None:
        return {"choices": [_value(v) for v in value]}
    return _value(value)


def _reference(fn) -> str | list:
    """"module:qualname" of a callable that can be imported again, else ["deferred", its __name__]."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module and qualname and "<" not in qualname:
        try:
            found = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
            if found is fn:
                return f"{module}:{qualname}"
        except (ImportError, AttributeError):
            pass
    return ["deferred", getattr(fn, "__name__", "value")]


def _value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise _Unrecordable
        return v
    if isinstance(v, tuple):
        return {"tuple": [_value(x) for x in v]}
    if isinstance(v, list):
        return [_value(x) for x in v]
    raise _Unrecordable


# -- replaying ---------------------------------------------------------------------------------------------

def _replay(target, calls: list, module) -> None:
    for call in calls:
        kind, args, kwargs = call[0], [_decode(a) for a in call[1]], {k: _decode_kwarg(k, v, module, call[1])
                                                                    for k, v in call[2].items()}
        if kind == "argument":
            target.add_argument(*args, **kwargs)
        elif kind == "group":
            _replay(target.add_argument_group(*args, **kwargs), call[3], module)
        elif kind == "exclusive":
            _replay(target.add_mutually_exclusive_group(**kwargs), call[3], module)
        else:
            raise ValueError(kind)


def _decode(v: Any) -> Any:
    if isinstance(v, dict) and "tuple" in v:
        return tuple(_decode(x) for x in v["tuple"])
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _decode_kwarg(key: str, v: Any, module, args: list) -> Any:
    if key == "type" and isinstance(v, dict) and "callable" in v:
        ref = v["callable"]
        if isinstance(ref, str):
            mod, qualname = ref.split(":")
            found = importlib.import_module(mod)
            for part in qualname.split("."):
                found = getattr(found, part)
            return found
        return _Deferred(module, args, ref[1])
    if key == "choices" and isinstance(v, dict) and "choices" in v:
        return [_decode(x) for x in v["choices"]]
    return _decode(v)


class _Deferred:
    """A `type` that could not be recorded: the real one, from the command's own `add_arguments`,
    built when a value reaches it (the option was given, so the command runs and imports it anyway)."""

    def __init__(self, module, option_strings: list, name: str):
        self.module, self.option_strings, self.__name__ = module, list(option_strings), name

    def __call__(self, value: str):
        import argparse

        parser = argparse.ArgumentParser(add_help=False)
        self.module.add_arguments(parser)
        action = next(a for a in parser._actions if list(a.option_strings) == self.option_strings
                      or (not a.option_strings and [a.dest] == self.option_strings))
        return action.type(value)


# -- the cache file ----------------------------------------------------------------------------------------

def _cache_file() -> Path | None:
    """$BLOCKPRUNE_CACHE/cli/args-KEY.json (default ~/.cache/blockprune), KEY a hash of this package's
    sources (every .py file's path and content: a few milliseconds)."""
    root = os.environ.get("BLOCKPRUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "blockprune")
    h = hashlib.sha256(f"{FORMAT} {sys.version} {_PACKAGE}".encode())
    try:
        for dirpath, dirnames, filenames in os.walk(_PACKAGE):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    with open(path, "rb") as source:
                        h.update(f"{os.path.relpath(path, _PACKAGE)}\0".encode() + source.read() + b"\0")
    except OSError:
        return None
    return Path(root) / "cli" / f"args-{h.hexdigest()[:20]}.json"


def _read(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


KEEP = 8  # cache files kept (the newest): one per version of the sources run from this cache folder


def _write(path: Path, data: dict) -> None:
    """Best effort: a cache that cannot be written only means the next run builds the arguments again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        old = sorted(path.parent.glob("args-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]
        for stale in old:
            stale.unlink(missing_ok=True)
    except OSError:
        pass
