"""`PruneOptions`: every option of a pruning run, checked against what the chosen method declares.

The choices come from the registries (methods, scorers and metrics, block types); nothing here names a
method. `resolved(device)` makes `auto` concrete, and `recorded()` is what binds a plan."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from . import models, monitor, scoring
from .errors import UserError
from .methods import METHODS, Method
from .methods import get as get_method
from .plan import Plan
from .models import check_device
from .scoring.racing import DEFAULT_Z
from .scoring.twoprecision import FAST_DTYPES, native_fast_dtype
from .search import criteria
from .search.greedy import BLOCK_TYPES


@dataclass
class PruneOptions:
    """Every option that changes what a search selects (recorded in the plan)."""

    method: str = "blockpruner"
    block_type: str = "mix"
    metric: str = "ppl"
    num_blocks: int | None = None
    ratio: float | None = None
    calibration: str = "alpaca"
    nsamples: int = 256
    seqlen: int = 2048
    seed: int = 42
    dtype: str = "fp32"
    # auto: "fast" (two-precision racing) where the device runs a fast low precision natively, else
    # "incremental"; resolved() makes it concrete before anything is recorded
    scorer: str = "auto"
    fast_dtype: str = "auto"  # fast scorer: the fast precision (auto: the device's native one, if any; none: racing)
    batch_size: int = 1
    cache_every: int = 1
    cache_device: str | None = None
    racing_z: float = DEFAULT_Z  # racing only: standard errors a candidate must trail the leader by to leave
    # the overfitting monitor (blockprune.monitor): auto = held-out Alpaca rows when calibrating on Alpaca
    validation: str = "auto"
    validation_nsamples: int | None = None  # rows; None: as many as nsamples, at most monitor.DEFAULT_ROWS
    # options of the width methods (see their `options` declaration and blockprune.width)
    # block searches that declare it (blockpruner): rank by perplexity, or by its rise per parameter
    criterion: str = "ppl"
    # blockpruner-evo: finished run folders whose removal sets seed the population (their sets are recorded
    # in the plan, the paths are not: they name this machine's folders)
    seed_runs: tuple[str, ...] = ()
    generations: int = 40  # blockpruner-evo: generations of offspring to race
    allocation: str = "uniform"
    gqa: str = "groups"
    layers: str = "1:-1"

    @property
    def chosen_method(self) -> Method:
        """The registered method these options run (an unknown name is a UserError)."""
        return get_method(self.method)

    def validate(self) -> None:
        method = self.chosen_method
        if self.metric not in scoring.metrics():
            raise UserError(f"--metric must be one of {', '.join(scoring.metrics())} (got {self.metric!r})")
        if self.block_type not in BLOCK_TYPES:
            raise UserError(f"--block-type must be one of {', '.join(BLOCK_TYPES)} (got {self.block_type!r})")
        if (self.num_blocks is None) == (self.ratio is None):
            raise UserError("give exactly one of --num-blocks K or --ratio r")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise UserError(f"--num-blocks must be at least 1 (got {self.num_blocks})")
        if self.ratio is not None and not (0.0 < self.ratio < 1.0):
            raise UserError(f"--ratio must be strictly between 0 and 1 (got {self.ratio})")
        if self.nsamples < 1:
            raise UserError(f"--nsamples must be at least 1 (got {self.nsamples})")
        if self.seqlen < 2:
            raise UserError(f"--seqlen must be at least 2 (got {self.seqlen})")
        if self.scorer not in scorer_choices():
            raise UserError(f"--scorer must be one of {', '.join(scorer_choices())} (got {self.scorer!r})")
        if self.fast_dtype not in FAST_CHOICES:
            raise UserError(f"--fast-dtype must be one of {', '.join(FAST_CHOICES)} (got {self.fast_dtype!r})")
        if self.validation_nsamples is not None and self.validation_nsamples < 1:
            raise UserError(f"--validation-nsamples must be at least 1 (got {self.validation_nsamples})")
        criteria.check(self.criterion)
        if self.generations < 0:
            raise UserError(f"--generations must be at least 0 (got {self.generations})")
        if not self.racing_z > 0:
            raise UserError(f"--racing-z must be positive (got {self.racing_z})")
        if self.cache_every < 1:
            raise UserError(f"--cache-every must be at least 1 (got {self.cache_every})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.dtype not in models.DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(models.DTYPES)} (got {self.dtype!r})")
        if self.cache_device is not None and self.cache_device.split(":")[0] != "disk":  # memory-mapped files
            check_device(self.cache_device, "--cache-device")
        if self.metric != scoring.PERPLEXITY and not method.ranks_by_metric:
            ranking = [m.name for m in METHODS.values() if m.ranks_by_metric]
            raise UserError(f"--metric {self.metric} does nothing with --method {self.method} (only "
                            f"{', '.join(ranking)} rank by --metric); drop --metric or change --method")
        if self._changed("racing_z") and self.scorer not in racing_scorers():
            raise UserError(f"--racing-z applies to --scorer racing and fast only (got --scorer {self.scorer}); "
                            f"drop --racing-z or add --scorer racing")
        if self._changed("fast_dtype") and self.scorer not in ("fast", "auto"):
            raise UserError(f"--fast-dtype applies to --scorer fast only (got --scorer {self.scorer}); "
                            f"drop --fast-dtype or use --scorer fast")
        method.validate(self)

    def check_all_used(self) -> None:
        """Refuse an option changed from its default that this run's method or metric ignores.

        Not part of validate(): `compare` runs several methods with one set of options, where --scorer,
        --block-type and the width options rightly reach only the methods that use them."""
        method = self.chosen_method
        if self._changed("scorer") and self.metric != scoring.PERPLEXITY:
            raise UserError(f"--scorer {self.scorer} does nothing with --metric {self.metric}, which scores "
                            f"candidates its own way; drop --scorer or use --metric ppl")
        if self._changed("scorer") and not method.uses_scorer:
            raise UserError(f"--scorer {self.scorer} does nothing with --method {self.method}, which does not "
                            f"score candidates by perplexity; drop --scorer")
        if self._changed("scorer") and method.complete_scores and scoring.get(self.scorer).races:
            raise UserError(f"--scorer {self.scorer} would rank --method {self.method}'s removals by scores some "
                            f"candidates got on only a few windows; it needs every score complete: drop --scorer "
                            f"(it then uses incremental) or use --scorer incremental")
        granularity = method.granularity
        if self._changed("block_type") and granularity != "block":
            unit = "whole layers" if granularity == "layer" else "heads and channels"
            raise UserError(f"--block-type {self.block_type} does nothing with --method {self.method}, which "
                            f"removes {unit}; drop --block-type")
        if self.validation_source is None and (self.validation not in ("auto", "none")
                                               or self._changed("validation_nsamples")):
            if granularity == "width":
                raise UserError(f"--validation applies to methods that remove blocks or layers step by step, not "
                                f"--method {self.method}; drop --validation and --validation-nsamples")
            raise UserError(f"--validation-nsamples does nothing without a monitor (--validation {self.validation} "
                            f"with --calibration {self.calibration}); give --validation SOURCE or drop it")
        for name in method_options():
            if self._changed(name) and name not in method.options:
                users = [m for m in METHODS.values() if name in m.options]
                names = [m.name for m in users]
                kinds = " or ".join(sorted({m.granularity for m in users}))
                raise UserError(f"--{name} applies to {kinds} methods only, not --method {self.method}; "
                                f"drop --{name} or use --method {', '.join(names[:-1])} or {names[-1]}")

    def _changed(self, name: str) -> bool:
        # the CLI passes every option, so "given" can only mean "set away from its default"
        return getattr(self, name) != _DEFAULTS[name]

    def resolved(self, device: str) -> PruneOptions:
        """These options with `auto` made concrete for `device`: what the plan records is what ran."""
        fast = self.fast_dtype
        if fast == "auto":
            # a sharded model (device auto) gets no fast copy: it would need as many devices again
            fast = (native_fast_dtype(device) if device != "auto" else None) or "none"
        if fast != "none" and FAST_DTYPES[fast] == models.DTYPES[self.dtype]:
            fast = "none"  # the search already runs in the fast precision
        scorer = self.scorer
        if scorer == "auto":
            scorer = "fast" if fast != "none" and self.metric == scoring.PERPLEXITY else "incremental"
        if self.chosen_method.complete_scores and scoring.get(scorer).races:
            scorer = "incremental"  # its ranking needs every candidate's score on every window (compare, auto)
        if self._changed("racing_z") and not scoring.get(scorer).races:
            raise UserError(f"--racing-z does nothing here: --scorer {self.scorer} means {scorer} on {device}, which "
                            f"does not race; drop --racing-z or add --scorer racing")
        if scorer != "fast":  # what only the fast scorer reads goes back to its default, so it validates again
            fast = _DEFAULTS["fast_dtype"]
        racing_z = self.racing_z if scorer in racing_scorers() else _DEFAULTS["racing_z"]
        return replace(self, scorer=scorer, fast_dtype=fast, racing_z=racing_z)

    @property
    def validation_source(self) -> str | None:
        """The monitor's validation text (None: no monitor); see blockprune.monitor.resolve."""
        return monitor.resolve(self.validation, self.calibration, self.chosen_method.granularity)

    def recorded(self) -> dict[str, Any]:
        # cache placement changes only speed and memory, not the result: it does not bind a resume
        own = self.chosen_method.options
        unused = () if scores_by_perplexity(self.chosen_method, self.metric) else SCORER_FIELDS
        rec = {k: v for k, v in self.__dict__.items()
               if k not in NOT_RECORDED + VALIDATION + unused and (k in own or k not in method_options())
               and (k != "racing_z" or self.scorer in racing_scorers())
               and (k != "fast_dtype" or self.scorer == "fast")
               and (k not in IF_CHANGED or self._changed(k))}
        if self.validation_source is not None:  # resolved, and absent without a monitor (as in older plans)
            rec.update(validation=self.validation_source,
                       validation_nsamples=monitor.rows(self.validation_nsamples, self.nsamples))
        return rec


_DEFAULTS = {f.name: f.default for f in fields(PruneOptions)}
FAST_CHOICES = ("auto", *FAST_DTYPES, "none")
SPEED_ONLY = ("cache_every", "cache_device")  # change speed and memory, not the result
NOT_RECORDED = SPEED_ONLY + ("seed_runs",)
# recorded only when set away from the default, so plans made before the option was recorded stay
# byte-identical; batch_size orders the sums behind every score, so it moves scores in their last bits
IF_CHANGED = ("criterion", "generations", "batch_size")
VALIDATION = ("validation", "validation_nsamples")
SCORER_FIELDS = ("scorer", "fast_dtype", "racing_z")  # what --scorer's choice records


def scores_by_perplexity(method: Method, metric: str) -> bool:
    """Candidates are scored by calibration perplexity through --scorer: only then do its fields
    (SCORER_FIELDS) change what the run selects."""
    return method.uses_scorer and metric == scoring.PERPLEXITY


def as_given(recorded: dict[str, Any]) -> dict[str, Any]:
    """Recorded options with those recorded only when changed (IF_CHANGED) at their defaults where absent:
    what a message names ("--batch-size 1 (now 2)", not "unset")."""
    return {**{k: _DEFAULTS[k] for k in IF_CHANGED}, **recorded}


def resume_check(plan: Plan, given: dict[str, Any], method: Method) -> tuple[tuple[str, ...], str | None]:
    """Which of `plan`'s recorded options may differ from `given` (what this run records) when this run
    continues it, and the line to print when the scorer changes:

    - the method's `extendable` options (they set only how long its search runs);
    - the scorer's fields where the run scores no candidate by perplexity through a scorer (plans made
      before issue 34 recorded them for every method);
    - the scorer's fields when both scorers select what exhaustive scoring selects (`like_exhaustive`:
      plain and incremental exactly, racing and fast within --racing-z), as when `auto` resolves to another
      scorer on another machine; --racing-z still binds when both race;
    - a finished plan's batch size when it records none: nothing is scored any more, and plans made
      before batch size was recorded do not say theirs.

    A scorer change that could select otherwise is refused (UserError) with the reason."""
    loose, note = method.extendable, None
    saved, now = plan.options.get("scorer"), given.get("scorer")
    if not scores_by_perplexity(method, given.get("metric", scoring.PERPLEXITY)):
        loose += SCORER_FIELDS
    elif saved is not None and (saved, plan.options.get("fast_dtype")) != (now, given.get("fast_dtype")):
        # --scorer fast without a native fast precision is racing (fast_dtype none): a switch too
        saved, now = _named(saved, plan.options), _named(now, given)
        unlike = [n for n, o in ((saved, plan.options), (now, given)) if not scoring.get(o["scorer"]).like_exhaustive]
        if unlike:
            raise UserError(f"this run was scored by --scorer {saved} and would continue with {now}; {unlike[0]} "
                            f"may select other units than exhaustive scoring, so the result could differ: resume "
                            f"with --scorer {saved}, or start a new --out")
        racing = [(n, o.get("racing_z", DEFAULT_Z)) for n, o in ((saved, plan.options), (now, given))
                  if scoring.get(o["scorer"]).races]
        loose += ("scorer", "fast_dtype") + (() if len(racing) == 2 else ("racing_z",))
        within = f"{' and '.join(n for n, _ in racing)} within --racing-z {racing[0][1]}" if racing else "exactly"
        note = (f"blockprune: this run was scored by --scorer {saved} and continues with {now}: both select what "
                f"exhaustive scoring selects ({within}), so its decisions are the same by construction")
    if plan.status == "done" and "batch_size" not in plan.options:
        loose += ("batch_size",)
    return loose, note


def _named(scorer: str, recorded: dict[str, Any]) -> str:
    fast = recorded.get("fast_dtype")
    return f"{scorer} ({'racing, no fast precision' if fast == 'none' else fast})" if fast else scorer


def scorer_choices() -> tuple[str, ...]:
    """--scorer: auto, then every registered perplexity scorer."""
    return ("auto", *scoring.perplexity_scorers())


def racing_scorers() -> tuple[str, ...]:
    """Scorers --racing-z applies to (auto may resolve to one)."""
    return ("auto", *(n for n in scoring.perplexity_scorers() if scoring.get(n).races))


def method_options() -> tuple[str, ...]:
    """Options some methods declare as their own (every other method refuses them changed)."""
    return tuple(dict.fromkeys(o for m in METHODS.values() for o in m.options))
