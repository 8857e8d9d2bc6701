"""The method registry. A method extends a plan's steps; it only ever decides the mask."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..data import Windows
from ..errors import UserError
from ..plan import Plan
from ..view import BlockView


@dataclass
class Job:
    """Everything a method needs: the view, the calibration windows, a scorer (None for a method that
    does not use one) and the options."""

    view: BlockView
    windows: Windows
    scorer: Any
    block_type: str
    num_blocks: int | None
    ratio: float | None
    on_step: Callable[[Plan, float], None] | None = None
    progress_factory: Callable[[int, int], Any] | None = None
    options: Any = None  # the run's PruneOptions, for methods with options of their own (width methods)
    batch_size: int = 1  # windows per forward pass (--batch-size), for every pass a method makes itself


class Method(Protocol):
    name: str
    #: "block" (attn/mlp units) or "layer" (whole layers): decides what --num-blocks counts;
    #: "width" (heads and channels inside blocks): writes `plan.width` instead of steps
    granularity: str
    summary: str
    #: scores candidates through `job.scorer` (built, with its boundary cache, only for such methods)
    uses_scorer: bool

    def run(self, job: Job, plan: Plan) -> Plan: ...


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]
