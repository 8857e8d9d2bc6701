"""The format registry: name -> `Format`. A format is one module that ends with one `register(...)`.

`export` (`writer.py`) asks the chosen format whether it can express the job (`refusal`) and then has it
write into a staging folder; `auto` is the first of `AUTO_ORDER` that does not refuse. The CLI offers
`choices()`, so a format registered before the parser is built is offered by `--format` too."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
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


#: every format, by name (`blockprune.registry`: one registration per name, in registration order, which
#: `--format` lists); "auto" is the writer's choice among them, never a format's name
FORMATS: Registry[Format] = Registry("export format", reserved=(AUTO,))
register = FORMATS.register
unregister = FORMATS.unregister
get = FORMATS.get


def choices() -> list[str]:
    """What `--format` accepts: "auto" and every registered format."""
    return [AUTO, *FORMATS]
