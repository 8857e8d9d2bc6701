"""A search option declared once, where the method or scorer that reads it lives.

A method lists its own options in `Method.options`, a scorer in `ScorerEntry.options`, each an `Option`:
its name (the `PruneOptions` attribute and the plan's key; the flag is `--name` with `-` for `_`), its
default, help text, argparse `type` and `choices`, a `check` that returns the error message for a value it
refuses, how the plan records it, whether a resume may change it, and which commands take it. Everything
else is derived from that declaration, so a new option is one `Option(...)` next to the code that reads it:

- the arguments of `prune`, `estimate` and `compare` (`add_arguments`; `values_from` reads them back);
- `PruneOptions(name=...)` and `options.name` (a default where not given);
- validation (`Option.error`), and the refusal of an option the run's method or scorer does not read;
- what `PruneOptions.recorded()` writes into plan.json, and what a resume may change (`extendable`).

This module imports no registry: `declared()` is handed the registered methods and scorers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

#: how a plan records an option: always (where the run's method or scorer reads it); only when set away
#: from its default (so plans made before the option existed stay byte-identical); never (it names this
#: machine's files, or changes only speed)
RECORD = ("always", "changed", "never")
#: the commands that take search options (estimate takes what prune takes)
COMMANDS = ("prune", "estimate", "compare")


@dataclass(frozen=True)
class Option:
    """One option of a method or scorer, as its module declares it."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None  # argparse's type (None: the string as given)
    choices: tuple[Any, ...] | None = None
    #: the one-line error for a value it refuses, None for one it accepts (choices are checked first)
    check: Callable[[Any], str | None] | None = None
    record: str = "always"
    #: a resume may change it: it sets only how long the search runs, and what it did so far is the same
    #: for any value
    extendable: bool = False
    commands: tuple[str, ...] = COMMANDS
    #: an argument group of `prune --help` ("width": "width methods (llm-bip, ...)"); None: none
    group: str | None = None

    def __post_init__(self):
        if self.record not in RECORD:
            raise ValueError(f"Option {self.name}: record must be one of {', '.join(RECORD)} (got {self.record!r})")
        unknown = set(self.commands) - set(COMMANDS)
        if unknown:
            raise ValueError(f"Option {self.name}: unknown commands {sorted(unknown)}; choose from {COMMANDS}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def error(self, value: Any) -> str | None:
        """Why `value` is refused (one line naming the flag), or None."""
        if self.choices is not None and value not in self.choices:
            return f"{self.flag} must be one of {', '.join(map(str, self.choices))} (got {value!r})"
        return self.check(value) if self.check else None

    def add_to(self, parser) -> None:
        kwargs: dict[str, Any] = {"default": self.default, "help": self.help}
        if self.type is not None:
            kwargs["type"] = self.type
        if self.choices is not None:
            kwargs["choices"] = list(self.choices)
        parser.add_argument(self.flag, **kwargs)


def names(options: Iterable[Option]) -> tuple[str, ...]:
    """The names of declared options (`"criterion" in names(method.options)`)."""
    return tuple(o.name for o in options)


def declared(owners: Iterable[Any]) -> dict[str, Option]:
    """Every option the `owners` (methods or scorer entries) declare, by name, in registration order; one
    name shared by several owners must be one declaration (the same `Option`), else a ValueError."""
    found: dict[str, Option] = {}
    for owner in owners:
        for o in getattr(owner, "options", ()):
            if found.setdefault(o.name, o) != o:
                raise ValueError(f"option {o.name!r} is declared twice, differently (by {owner.name} too): "
                                 f"declare it once and list that Option wherever it is read")
    return found


def add_arguments(parser, options: Iterable[Option], command: str) -> None:
    """`options`' arguments for `command`, in order."""
    for o in options:
        if command in o.commands:
            o.add_to(parser)


def values_from(args, options: Iterable[Option], command: str) -> dict[str, Any]:
    """What a parsed command line gives `options` (those `command` takes), by name: PruneOptions keywords."""
    return {o.name: getattr(args, o.name) for o in options if command in o.commands}


def comma_separated(value: str) -> tuple[str, ...]:
    """An argparse `type`: "a,b,,c" -> ("a", "b", "c")."""
    return tuple(v for v in value.split(",") if v)


def joined(words: list[str], conjunction: str = "and") -> str:
    """"a", "a and b", "a, b and c"."""
    return f" {conjunction} ".join([", ".join(words[:-1]), words[-1]] if len(words) > 2 else words)
