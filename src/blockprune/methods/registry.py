"""The method registry. A method extends a plan's steps; it only ever decides the mask."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol

from ..data import Windows
from ..declared import Option
from ..plan import Plan
from ..registry import Registry
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
    #: saves the plan between steps, for a method whose work after its last step is long enough to resume
    checkpoint: Callable[[Plan], None] | None = None


class Method(Protocol):
    """What a pruning method is and what it declares about itself; `api.prune` reads only this."""

    name: str
    #: "block" (attn/mlp units) or "layer" (whole layers): decides what --num-blocks counts;
    #: "width" (heads and channels inside blocks): writes `plan.width` instead of steps
    granularity: str
    summary: str
    #: scores candidates through `job.scorer` (built, with its boundary cache, only for such methods)
    uses_scorer: bool
    #: ranks units with the search's scorer, so --metric decides what it removes
    ranks_by_metric: bool
    #: scores once per removal step, so with --num-blocks K the run has K steps (progress estimates)
    iterative: bool
    #: ranks its removals by every candidate's score, so no score may stop early: a racing scorer
    #: (given to compare, or chosen by auto) becomes the exact incremental one
    complete_scores: bool
    #: the options only methods declaring them read (`declared.Option`: flag, default, help, check, plan
    #: record; any other method refuses them changed)
    options: tuple[Option, ...]
    #: the options a resume may change (its own `Option.extendable` ones, and for a greedy search the budget):
    #: they set only how long the search runs, and `extend` keeps what it did so far that holds for the new value
    extendable: tuple[str, ...]

    def validate(self, options: Any) -> None:
        """Refuse options this method cannot run with (a one-line UserError), before anything is written."""

    def check_inputs(self, plan: Plan, view: BlockView, options: Any) -> None:
        """Refuse options this method cannot run with on this model and data (a one-line UserError): `plan` is
        the new plan (model and calibration recorded), checked before anything is written."""

    def extend(self, plan: Plan, options: Any, view: BlockView) -> Plan:
        """The saved `plan` as a run with `options` (its `extendable` ones changed) continues it: the saved
        state, or the part of it such a run would share; a UserError where its state cannot follow."""

    def describe(self, plan: Plan) -> str | None:
        """One line on what the result keeps beyond its steps, for the run summary (None: nothing to add)."""

    def run(self, job: Job, plan: Plan) -> Plan: ...


class MethodDefaults:
    """What a method declares unless it says otherwise: a one-shot method with no options of its own."""

    uses_scorer: ClassVar[bool] = False
    ranks_by_metric: ClassVar[bool] = False
    iterative: ClassVar[bool] = False
    complete_scores: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = ()

    @property
    def extendable(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options if o.extendable)

    def validate(self, options: Any) -> None:
        pass

    def check_inputs(self, plan: Plan, view: BlockView, options: Any) -> None:
        pass

    def extend(self, plan: Plan, options: Any, view: BlockView) -> Plan:
        return plan

    def describe(self, plan: Plan) -> str | None:
        return None


#: every method, by name (`blockprune.registry`: one registration per name, in registration order)
METHODS: Registry[Method] = Registry("method")
register = METHODS.register
unregister = METHODS.unregister
get = METHODS.get
