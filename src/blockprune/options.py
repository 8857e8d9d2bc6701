"""`PruneOptions`: every option of a pruning run, checked against what the chosen method declares.

The choices come from the registries (methods, scorers and metrics, block types); nothing here names a
method. The options of the run as a whole are fields here; an option only some methods or scorers read is
declared where they live (`declared.Option` in `Method.options` or `ScorerEntry.options`), and taken,
checked and recorded from that declaration (`declared_options()`). `resolved(device)` makes `auto`
concrete, and `recorded()` is what binds a plan."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import models, monitor, scoring
from .declared import Option, declared, joined
from .errors import UserError
from .methods import METHODS, Method
from .methods import get as get_method
from .plan import Plan
from .models import check_device
from .scoring.racing import DEFAULT_Z
from .scoring.twoprecision import FAST_DTYPES, native_fast_dtype
from .search.greedy import BLOCK_TYPES


@dataclass(init=False)
class PruneOptions:
    """Every option that changes what a search selects (recorded in the plan).

    `PruneOptions(generations=25)` and `options.generations` take and read a declared option like a field
    (its declaration's default where not given); `declared` holds those set away from their defaults."""

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
    # "incremental"; resolved() makes it concrete before anything is recorded (the scorers' own options,
    # --racing-z and --fast-dtype, are declared in scoring/racing.py and scoring/twoprecision.py)
    scorer: str = "auto"
    batch_size: int = 1
    cache_every: int = 1
    cache_device: str | None = None
    # the overfitting monitor (blockprune.monitor): auto = held-out Alpaca rows when calibrating on Alpaca
    validation: str = "auto"
    validation_nsamples: int | None = None  # rows; None: as many as nsamples, at most monitor.DEFAULT_ROWS
    # the declared options (methods' and scorers') set away from their defaults, by name
    declared: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **given: Any):
        known = declared_options()
        values = dict(given.pop("declared", None) or {})  # dataclasses.replace hands the field back
        for f in fields(self):
            if f.name != "declared":
                object.__setattr__(self, f.name, given.pop(f.name, f.default))
        for name, value in given.items():
            if name not in known:
                raise TypeError(f"PruneOptions() got an unexpected keyword argument {name!r}")
            values[name] = value
        object.__setattr__(self, "declared", {k: v for k, v in values.items()
                                              if k not in known or v != known[k].default})

    def __getattr__(self, name: str) -> Any:  # only where no field or attribute has the name
        values = self.__dict__.get("declared", {})
        if name in values:
            return values[name]
        option = declared_options().get(name) if not name.startswith("__") else None
        if option is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return option.default

    def __setattr__(self, name: str, value: Any) -> None:
        option = declared_options().get(name)
        if option is None:
            object.__setattr__(self, name, value)
        elif value == option.default:
            self.declared.pop(name, None)
        else:
            self.declared[name] = value

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
        if self.validation_nsamples is not None and self.validation_nsamples < 1:
            raise UserError(f"--validation-nsamples must be at least 1 (got {self.validation_nsamples})")
        for option in declared_options().values():  # each as its method or scorer declares it
            error = option.error(getattr(self, option.name))
            if error:
                raise UserError(error)
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
        for option in scorer_options().values():  # auto may resolve to any scorer
            users = [n for n in scoring.perplexity_scorers() if option in scoring.get(n).options]
            if self._changed(option.name) and self.scorer not in ("auto", *users):
                raise UserError(f"{option.flag} applies to --scorer {joined(users)} only (got --scorer "
                                f"{self.scorer}); drop {option.flag} or use --scorer {users[0]}")
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
        for option in method_options().values():
            if self._changed(option.name) and option not in method.options:
                users = [m for m in METHODS.values() if option in m.options]
                kinds = " or ".join(sorted({m.granularity for m in users}))
                raise UserError(f"{option.flag} applies to {kinds} methods only, not --method {self.method}; "
                                f"drop {option.flag} or use --method {joined([m.name for m in users], 'or')}")

    def _changed(self, name: str) -> bool:
        # the CLI passes every option, so "given" can only mean "set away from its default"
        return getattr(self, name) != default(name)

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
        # what only other scorers read goes back to its default, so it validates again
        unread = {o.name: o.default for o in scorer_options().values() if o not in scoring.get(scorer).options}
        return replace(self, scorer=scorer, **{"fast_dtype": fast, **unread})

    @property
    def validation_source(self) -> str | None:
        """The monitor's validation text (None: no monitor); see blockprune.monitor.resolve."""
        return monitor.resolve(self.validation, self.calibration, self.chosen_method.granularity)

    def recorded(self) -> dict[str, Any]:
        # cache placement changes only speed and memory, not the result: it does not bind a resume
        method = self.chosen_method
        by_perplexity = scores_by_perplexity(method, self.metric)
        rec = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in NOT_RECORDED + VALIDATION + ("declared",) and (by_perplexity or f.name != "scorer")
               and (f.name not in IF_CHANGED or self._changed(f.name))}
        # a declared option: where the run's method reads it, or its scorer (auto: any) scores by perplexity
        scorer = scoring.get(self.scorer) if self.scorer in scoring.SCORERS else None
        read = [*method.options, *(o for o in scorer_options().values()
                                   if by_perplexity and (self.scorer == "auto" or scorer and o in scorer.options))]
        rec.update({o.name: getattr(self, o.name) for o in read
                    if o.record == "always" or o.record == "changed" and self._changed(o.name)})
        if self.validation_source is not None:  # resolved, and absent without a monitor (as in older plans)
            rec.update(validation=self.validation_source,
                       validation_nsamples=monitor.rows(self.validation_nsamples, self.nsamples))
        return rec


_DEFAULTS = {f.name: f.default for f in fields(PruneOptions) if f.name != "declared"}
SPEED_ONLY = ("cache_every", "cache_device")  # change speed and memory, not the result
NOT_RECORDED = SPEED_ONLY
# recorded only when set away from the default, so plans made before the option was recorded stay
# byte-identical; batch_size orders the sums behind every score, so it moves scores in their last bits
# (a declared option says so itself: Option.record)
IF_CHANGED = ("batch_size",)
VALIDATION = ("validation", "validation_nsamples")


def method_options() -> dict[str, Option]:
    """Options some methods declare as their own (every other method refuses them changed), by name."""
    return declared(METHODS.values())


def scorer_options() -> dict[str, Option]:
    """Options some perplexity scorers declare as their own (another --scorer refuses them changed)."""
    return declared(scoring.get(n) for n in scoring.perplexity_scorers())


def declared_options() -> dict[str, Option]:
    """Every declared option, methods' then scorers': PruneOptions' keywords and attributes beyond its fields."""
    found = {**method_options(), **scorer_options()}
    clash = sorted((set(method_options()) & set(scorer_options())) | (set(found) & set(_DEFAULTS)))
    if clash:
        raise ValueError(f"options declared twice (by a method and a scorer, or as a PruneOptions field): {clash}")
    return found


def default(name: str) -> Any:
    """An option's default: PruneOptions' field, or its declaration's."""
    return _DEFAULTS[name] if name in _DEFAULTS else declared_options()[name].default


def scorer_fields() -> tuple[str, ...]:
    """What --scorer's choice records: the scorer, and every scorer's own options."""
    return ("scorer", *scorer_options())


def recorded_if_changed() -> tuple[str, ...]:
    """Options a plan records only when set away from their defaults."""
    return IF_CHANGED + tuple(n for n, o in declared_options().items() if o.record == "changed")


def scores_by_perplexity(method: Method, metric: str) -> bool:
    """Candidates are scored by calibration perplexity through --scorer: only then do its fields
    (scorer_fields()) change what the run selects."""
    return method.uses_scorer and metric == scoring.PERPLEXITY


def as_given(recorded: dict[str, Any]) -> dict[str, Any]:
    """Recorded options with those recorded only when changed (recorded_if_changed()) at their defaults where absent:
    what a message names ("--batch-size 1 (now 2)", not "unset")."""
    return {**{k: default(k) for k in recorded_if_changed()}, **recorded}


def resume_check(plan: Plan, given: dict[str, Any], method: Method) -> tuple[tuple[str, ...], str | None]:
    """Which of `plan`'s recorded options may differ from `given` (what this run records) without changing
    the result, and the line to print when the scorer changes (the method's `extendable` options change how
    far its search goes: a resume extends the plan with them, a finished folder is not reused under them):

    - the scorer's fields where the run scores no candidate by perplexity through a scorer (plans made
      before issue 34 recorded them for every method);
    - the scorer's fields when both scorers select what exhaustive scoring selects (`like_exhaustive`:
      plain and incremental exactly, racing and fast within --racing-z), as when `auto` resolves to another
      scorer on another machine; --racing-z still binds when both race;
    - a finished plan's batch size when it records none: nothing is scored any more, and plans made
      before batch size was recorded do not say theirs.

    A scorer change that could select otherwise is refused (UserError) with the reason."""
    loose, note = (), None
    saved, now = plan.options.get("scorer"), given.get("scorer")
    if not scores_by_perplexity(method, given.get("metric", scoring.PERPLEXITY)):
        loose += scorer_fields()
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
