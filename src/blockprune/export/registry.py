"""The format registry: name -> `Format`. A format is one module that ends with one `register(...)`.

`export` (`writer.py`) asks the chosen format whether it can express the job (`refusal`) and then has it
write into a staging folder; `auto` is the first of `AUTO_ORDER` that does not refuse. The CLI offers
`choices()`, so a format registered before the parser is built is offered by `--format` too."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .common import Job

AUTO = "auto"
#: what `auto` tries, in order: the family's own layout where it expresses the job, else the format that
#: expresses every job
AUTO_ORDER = ("vanilla", "remote-code")


def _accepts_all(job: Job) -> str | None:
    return None


@dataclass(frozen=True)
class Format:
    name: str
    #: writes the job into the folder (a staging folder, moved into place when it returns); may raise
    #: `UserError` for what only writing finds out
    write: Callable[[Job, Path], None]
    #: None where the format can express the job, else why not and what to use instead (one line)
    refusal: Callable[[Job], str | None] = _accepts_all
    help: str = ""
    #: writes one file at the output path (staged as a temporary file beside it) instead of a folder
    file: bool = False
    #: the names of the `Job.options` it takes (any other is refused)
    options: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    if fmt.name == AUTO or fmt.name in FORMATS:
        raise ValueError(f"export format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a format (a test's or a plug-in's that registered it at runtime)."""
    del FORMATS[name]


def choices() -> list[str]:
    """What `--format` accepts: "auto" and every registered format."""
    return [AUTO, *FORMATS]
