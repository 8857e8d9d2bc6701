"""The one registry convention of blockprune's plug-ins: methods, scorers, width scores, export formats and
model-family adapters are each one `Registry`, filled by their package importing every one of its modules
(`import_all`), each module registering its own entries with `register(entry)`.

An entry is registered under its `name` (an adapter under each of its `model_types`), once: a second entry
under a taken name is refused, so one plug-in never silently replaces another. Names keep registration
order, the order the CLI offers them in."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


def _name(entry: Any) -> tuple[str, ...]:
    return (entry.name,)


class Registry(Generic[T]):
    """Entries by name, read like a mapping (`name in r`, `r[name]`, `list(r)`, `r.items()`)."""

    def __init__(self, kind: str, names: Callable[[T], Iterable[str]] = _name, reserved: tuple[str, ...] = ()):
        self.kind = kind  # what an entry is, in messages: "method", "export format", ...
        self._names = names  # the names an entry is registered under
        self._reserved = reserved  # names the registry's users give another meaning (export's "auto")
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add `entry` under its names; returns it, so a class can be registered by decorator."""
        names = tuple(self._names(entry))
        for name in names:
            if name in self._reserved or name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already "
                                 f"{'reserved' if name in self._reserved else 'registered'}; give the new one "
                                 f"another name (or unregister the first)")
        self._entries.update(dict.fromkeys(names, entry))
        return entry

    def unregister(self, name: str) -> T:
        """Remove the entry registered under `name` (a test's or a plug-in's) from every name it holds."""
        entry = self[name]
        for other in [n for n, e in self._entries.items() if e is entry]:
            del self._entries[other]
        return entry

    @contextmanager
    def replaced(self, entry: T) -> Iterator[T]:
        """`entry` in place of the one under its names, at the same place in the order, while the block runs
        (a test's variant of a built-in entry)."""
        names = tuple(self._names(entry))
        before = {name: self[name] for name in names}
        self._entries.update(dict.fromkeys(names, entry))
        try:
            yield entry
        finally:
            self._entries.update(before)

    def get(self, name: str) -> T:
        """The entry under `name`, or a one-line UserError that lists the choices."""
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterable[tuple[str, T]]:
        return self._entries.items()

    def values(self) -> Iterable[T]:
        """The entry under each name (an entry with several names, an adapter's, once per name)."""
        return self._entries.values()


def import_all(package: str, path: Iterable[str], first: tuple[str, ...] = ()) -> None:
    """Import every module of `package` (not its subpackages): `first` in that order, where the order of
    its entries matters, then the rest by name. Each module registers its entries as it is imported, so a
    new one is offered with no other edit."""
    rest = sorted(m.name for m in pkgutil.iter_modules(path) if not m.ispkg and m.name not in first)
    for module in (*first, *rest):
        importlib.import_module(f"{package}.{module}")
