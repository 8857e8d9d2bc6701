"""The Python API: `prune` runs a method end to end into a run folder; `load` reads a checkpoint back."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from . import atomic, models, monitor
from .data import load_windows
from .distributed import SplitScorer, init_from_env
from .errors import UserError
from .export import load
from .methods import get as get_method
from .methods.llm_bip import describe as describe_width
from .methods.llm_bip import width_options
from .metrics import METRICS, true_ppl_steps
from .metrics import make_scorer as metric_scorer
from .models import check_device
from .incremental import IncrementalScorer
from .perplexity import PlainScorer, perplexity
from .racing import DEFAULT_Z, RacingScorer
from .twoprecision import FAST_DTYPES, TwoPrecisionScorer, native_fast_dtype
from .plan import Plan
from .search.greedy import BLOCK_TYPES, budget_check, units
from .view import BlockView

__all__ = ["PruneOptions", "RunResult", "prune", "load"]


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
    # width methods only (llm-bip, width-local, width-magnitude; see blockprune.width)
    allocation: str = "uniform"
    gqa: str = "groups"
    layers: str = "1:-1"

    def validate(self) -> None:
        get_method(self.method)
        if self.metric not in METRICS:
            raise UserError(f"--metric must be one of {', '.join(METRICS)} (got {self.metric!r})")
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
        if self.scorer not in SCORERS:
            raise UserError(f"--scorer must be one of {', '.join(SCORERS)} (got {self.scorer!r})")
        if self.fast_dtype not in FAST_CHOICES:
            raise UserError(f"--fast-dtype must be one of {', '.join(FAST_CHOICES)} (got {self.fast_dtype!r})")
        if self.validation_nsamples is not None and self.validation_nsamples < 1:
            raise UserError(f"--validation-nsamples must be at least 1 (got {self.validation_nsamples})")
        if not self.racing_z > 0:
            raise UserError(f"--racing-z must be positive (got {self.racing_z})")
        if self.cache_every < 1:
            raise UserError(f"--cache-every must be at least 1 (got {self.cache_every})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.dtype not in models.DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(models.DTYPES)} (got {self.dtype!r})")
        if self.cache_device is not None:
            check_device(self.cache_device, "--cache-device")
        if self.metric != "ppl" and self.method not in METRIC_METHODS:
            raise UserError(f"--metric {self.metric} does nothing with --method {self.method} (only "
                            f"{', '.join(METRIC_METHODS)} rank by --metric); drop --metric or change --method")
        if self._changed("racing_z") and self.scorer not in RACING_SCORERS:
            raise UserError(f"--racing-z applies to --scorer racing and fast only (got --scorer {self.scorer}); "
                            f"drop --racing-z or add --scorer racing")
        if self._changed("fast_dtype") and self.scorer not in ("fast", "auto"):
            raise UserError(f"--fast-dtype applies to --scorer fast only (got --scorer {self.scorer}); "
                            f"drop --fast-dtype or use --scorer fast")
        if self.is_width:
            width_options(self).validate()
        if self.is_width and self.num_blocks is not None:  # refused here, before a plan is written
            raise UserError(f"--method {self.method} removes a share of the parameters: give --ratio r, "
                            f"not --num-blocks")

    def check_all_used(self) -> None:
        """Refuse an option changed from its default that this run's method or metric ignores.

        Not part of validate(): `compare` runs several methods with one set of options, where --scorer,
        --block-type and the width options rightly reach only the methods that use them."""
        if self._changed("scorer") and self.metric != "ppl":
            raise UserError(f"--scorer {self.scorer} does nothing with --metric {self.metric}, which scores "
                            f"candidates its own way; drop --scorer or use --metric ppl")
        if self._changed("scorer") and not get_method(self.method).uses_scorer:
            raise UserError(f"--scorer {self.scorer} does nothing with --method {self.method}, which does not "
                            f"score candidates by perplexity; drop --scorer")
        granularity = get_method(self.method).granularity
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
        for name in WIDTH_ONLY:
            if self._changed(name) and granularity != "width":
                raise UserError(f"--{name} applies to width methods only, not --method {self.method}; "
                                f"drop --{name} or use --method llm-bip, width-local or width-magnitude")

    def _changed(self, name: str) -> bool:
        # the CLI passes every option, so "given" can only mean "set away from its default"
        return getattr(self, name) != _DEFAULTS[name]

    @property
    def is_width(self) -> bool:
        return get_method(self.method).granularity == "width"

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
            scorer = "fast" if fast != "none" and self.metric == "ppl" else "incremental"
        if self._changed("racing_z") and scorer not in ("racing", "fast"):
            raise UserError(f"--racing-z does nothing here: --scorer {self.scorer} means {scorer} on {device}, which "
                            f"does not race; drop --racing-z or add --scorer racing")
        if scorer != "fast":  # what only the fast scorer reads goes back to its default, so it validates again
            fast = _DEFAULTS["fast_dtype"]
        racing_z = self.racing_z if scorer in RACING_SCORERS else _DEFAULTS["racing_z"]
        return replace(self, scorer=scorer, fast_dtype=fast, racing_z=racing_z)

    @property
    def validation_source(self) -> str | None:
        """The monitor's validation text (None: no monitor); see blockprune.monitor.resolve."""
        return monitor.resolve(self.validation, self.calibration, get_method(self.method).granularity)

    def recorded(self) -> dict[str, Any]:
        # batching and cache placement change only speed and memory, not the result: they do not bind a resume
        rec = {k: v for k, v in self.__dict__.items()
               if k not in SPEED_ONLY + VALIDATION and (self.is_width or k not in WIDTH_ONLY)
               and (k != "racing_z" or self.scorer in RACING_SCORERS)
               and (k != "fast_dtype" or self.scorer == "fast")}
        if self.validation_source is not None:  # resolved, and absent without a monitor (as in older plans)
            rec.update(validation=self.validation_source,
                       validation_nsamples=monitor.rows(self.validation_nsamples, self.nsamples))
        return rec

    def make_scorer(self, view: BlockView, windows):
        if self.metric != "ppl":
            return metric_scorer(self.metric, view, windows, self.batch_size)
        if self.scorer == "plain":
            return PlainScorer(view, windows, self.batch_size)
        if self.scorer == "incremental":
            return IncrementalScorer(view, windows, self.batch_size, self.cache_every, self.cache_device)
        if self.scorer == "fast":
            return TwoPrecisionScorer(view, windows, self.batch_size, self.cache_every, self.cache_device,
                                      z=self.racing_z, fast_dtype=None if self.fast_dtype == "none" else self.fast_dtype)
        return RacingScorer(view, windows, self.batch_size, self.cache_every, self.cache_device, z=self.racing_z)


_DEFAULTS = {f.name: f.default for f in fields(PruneOptions)}
SCORERS = ("auto", "plain", "incremental", "racing", "fast")
RACING_SCORERS = ("racing", "fast", "auto")
FAST_CHOICES = ("auto", *FAST_DTYPES, "none")
SPEED_ONLY = ("batch_size", "cache_every", "cache_device")
WIDTH_ONLY = ("allocation", "gqa", "layers")
VALIDATION = ("validation", "validation_nsamples")
# methods that rank units with the search's scorer, so --metric decides what they remove
# (blockpruner-refined swaps on perplexity alone; shortgpt, relative-magnitude and width methods have their own score)
METRIC_METHODS = ("blockpruner", "layer-ppl", "blockpruner-oneshot")
# methods that score once per removal step, so the number of steps is --num-blocks
ITERATIVE_METHODS = ("blockpruner", "layer-ppl", "blockpruner-refined")


@dataclass
class RunResult:
    out: Path
    plan: Plan
    checkpoint: Path | None
    summary: dict[str, Any] = field(default_factory=dict)


def _check_writable(out: Path) -> None:
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the output folder {out} ({probe} is not a writable folder); choose another --out")


@contextmanager
def memory_guard(options: PruneOptions):
    """Out of accelerator memory: say which options reduce memory instead of a stack trace."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        raise UserError(f"out of accelerator memory (batch size {options.batch_size}, {options.dtype}); reduce "
                        f"--batch-size, keep the cache in CPU memory with --cache-device cpu, store fewer "
                        f"boundaries with --cache-every, or use --dtype bf16") from e


class _Progress:
    """One tqdm bar per search step (its own ETA). When the number of steps is known (--num-blocks with
    an iterative method), the bar also says which step of how many and the whole run's time left: what
    is left of this step at the candidate-windows per second seen so far in it, plus the candidates the
    remaining steps score (one fewer each step) at the time per candidate of the steps done so far. The
    label is refreshed as the step goes, at most once a second."""

    def __init__(self, windows: int, steps: int | None, races: bool = False):
        self.windows, self.steps = windows, steps
        self.races = races  # candidates may stop early: until a step has shown how many, the estimate is a bound
        self.candidates, self.seconds = 0, 0.0  # over the steps this process has finished
        # candidate-windows the finished steps ran, of those their bars offered (racing runs fewer)
        self.ran, self.offered = 0, 0

    def bar(self, step: int, candidates: int):
        return _StepBar(self, step, candidates)

    def label(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0) -> str:
        where = f"step {step}/{self.steps}" if self.steps else f"step {step}"
        left = self.run_left(step, candidates, done, elapsed)
        bound = "at most " if self.races and not self.offered else ""
        return f"{where}: {candidates} candidates" + (f", run {bound}~{left} left" if left else "")

    def step_done(self, candidates: int, seconds: float) -> None:
        self.candidates += candidates
        self.seconds += seconds

    def run_left(self, step: int, candidates: int, done: int = 0, elapsed: float = 0.0) -> str | None:
        if not self.steps or step > self.steps:
            return None
        if done and elapsed > 0:  # this step's own pace
            share = self.ran / self.offered if self.offered else 1.0
            seconds_per_window = elapsed / done
            this = max(candidates * self.windows - done, 0) * share * seconds_per_window
            per_candidate = self.seconds / self.candidates if self.candidates else \
                self.windows * share * seconds_per_window
        elif self.candidates:
            per_candidate = self.seconds / self.candidates
            this = candidates * per_candidate
        else:
            return None
        later = sum(max(candidates - j, 0) for j in range(1, self.steps - step + 1))
        return _duration(this + later * per_candidate)


class _StepBar:
    """A step's bar: `update(n)` as candidate-windows run, `close()` when the step ends. It closes at its
    total, since racing leaves candidate-windows that never run and the step is done all the same."""

    def __init__(self, progress: _Progress, step: int, candidates: int):
        from tqdm.auto import tqdm

        self.progress, self.step, self.candidates = progress, step, candidates
        self.start = self.shown = time.monotonic()
        self.tqdm = tqdm(total=candidates * progress.windows, desc=progress.label(step, candidates), unit="win",
                         leave=False, file=sys.stderr)

    @property
    def desc(self) -> str:
        return self.tqdm.desc

    @property
    def total(self) -> int:
        return self.tqdm.total

    @property
    def n(self) -> int:
        return self.tqdm.n

    def update(self, n: int) -> None:
        self.tqdm.update(n)
        now = time.monotonic()
        if now - self.shown >= 1.0:
            self.shown = now
            self.tqdm.set_description_str(self.progress.label(self.step, self.candidates, self.tqdm.n, now - self.start),
                                      refresh=False)

    def close(self) -> None:
        self.progress.ran += self.tqdm.n
        self.progress.offered += self.tqdm.total
        self.tqdm.update(self.tqdm.total - self.tqdm.n)
        self.tqdm.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _load_timings(path: Path, resume: bool) -> dict[str, Any]:
    """The steps' wall times so far. They are not part of the plan's identity, so an unreadable file
    (damaged or edited outside blockprune) restarts the record instead of refusing a good search state."""
    if not (resume and path.exists()):
        return {"steps": []}
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(timings, dict) and isinstance(timings.get("steps"), list):
            return timings
    except (ValueError, OSError):  # JSON and UTF-8 decoding errors are ValueErrors
        pass
    print(f"blockprune: warning: {path} is unreadable; step timings start again from this step", file=sys.stderr)
    return {"steps": []}


def _time_monitor(timings: dict[str, Any], step: dict[str, Any] | None, seconds: float | None) -> None:
    """Account the monitor's validation passes in timings.json: per step (or the dense model's), in total,
    and as a share of the run's search time (validation seconds / (step seconds + validation seconds))."""
    if seconds is None:
        return
    if step is None:
        timings["dense_validation_seconds"] = round(timings.get("dense_validation_seconds", 0.0) + seconds, 3)
    else:
        step["validation_seconds"] = round(seconds, 3)
    total = timings.get("dense_validation_seconds", 0.0) + sum(s.get("validation_seconds", 0.0) for s in timings["steps"])
    search = sum(s["seconds"] for s in timings["steps"])
    timings["validation_seconds"] = round(total, 3)
    timings["validation_share"] = round(total / (total + search), 4) if total + search > 0 else None


def prune(model: str = models.DEFAULT_MODEL, out: str | os.PathLike = "runs/blockprune", *,
          options: PruneOptions | None = None, data_dir: str | os.PathLike | None = None, device: str = "cpu",
          resume: bool = False, export: bool = True, progress: bool = True, **option_overrides) -> RunResult:
    """Run a pruning method on `model` and write `out/plan.json` and the pruned checkpoint `out/model`.

    Options are a `PruneOptions` or its fields as keywords (`num_blocks=12`, `block_type="mix"`, ...)."""
    given = options is None  # keywords name options for this one run; compare passes options its methods share
    options = options or PruneOptions(**option_overrides)
    options.validate()
    if given:
        options.check_all_used()
    if device != "auto":  # auto: accelerate places the model on whatever there is
        check_device(device)
    options = options.resolved(device)
    out = Path(out)
    plan_path = out / "plan.json"
    if plan_path.exists() and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not plan_path.exists():  # a mistyped --out would otherwise start a whole new search
        raise UserError(f"nothing to resume in {out} (no plan.json); check --out, or drop --resume to start "
                        f"a new run (a run killed before its first save left nothing to resume)")
    _check_writable(out)

    if not progress:  # quiet means quiet: no weight-loading bars either
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    net, tok = models.load(model, options.dtype, device)
    view = BlockView(net)
    max_len = getattr(net.config, "max_position_embeddings", None)
    if max_len is not None and options.seqlen > max_len:
        raise UserError(f"--seqlen {options.seqlen} is above the model's context of {max_len} tokens")
    windows = load_windows(options.calibration, tok, options.seqlen, nsamples=options.nsamples, seed=options.seed,
                           data_dir_=data_dir)
    vsource = options.validation_source
    vwindows = monitor.load(vsource, options, tok, data_dir) if vsource else None
    method = get_method(options.method)
    if options.num_blocks is not None and method.granularity in ("block", "layer"):
        pool = units(view, method.granularity, options.block_type if method.granularity == "block" else "mix")
        budget_check(pool, options.num_blocks)  # refuse before anything is written
    fresh = Plan(method=method.name,
                 model={"source": model, "family": net.config.model_type, "params": view.total_params,
                        "layers": view.num_layers, "sha256": models.fingerprint(net)},
                 calibration=windows.describe(), options=options.recorded(),
                 validation=vwindows.describe() if vwindows else None)
    if resume:
        plan = Plan.load(plan_path)
        if plan.identity() != fresh.identity():
            diff = [k for k in fresh.identity() if fresh.identity()[k] != plan.identity()[k]]
            raise UserError(f"{plan_path} was made with a different {', '.join(diff)}; "
                            f"it cannot be resumed with these inputs (start a new --out)")
    else:
        plan = fresh

    rank, world = init_from_env()
    main = rank == 0  # with torchrun, every rank searches in lockstep and rank 0 alone writes
    progress = progress and main
    scorer = None  # built only for a method that scores through one: its cache embeds every window up front
    if method.uses_scorer:
        with memory_guard(options):
            scorer = options.make_scorer(view, windows)
        if world > 1:
            scorer = SplitScorer(scorer, rank, world)

    def save(p: Plan) -> None:
        if main:
            p.save(plan_path)
    timings_path = out / "timings.json"
    timings = _load_timings(timings_path, resume) if main else {"steps": []}
    watch = monitor.Monitor(view, vwindows, options.batch_size) if vwindows and main else None
    if not plan.dense:
        with memory_guard(options):
            dense = perplexity(view, windows, batch_size=options.batch_size)
        if not math.isfinite(dense):
            hint = "fp16 overflows on this model: use --dtype bf16 or fp32" if options.dtype == "fp16" else \
                "check the model and the calibration text"
            raise UserError(f"the unpruned model's calibration perplexity is {dense}; {hint}")
        plan.dense = {"ppl": dense}
    if watch:
        _time_monitor(timings, None, watch.update(plan))
    save(plan)

    bars = _Progress(len(windows), options.num_blocks if method.name in ITERATIVE_METHODS else None,
                     races=options.scorer == "racing" and options.metric == "ppl") if progress else None

    def on_step(p: Plan, seconds: float) -> None:
        checked = watch.update(p) if watch else None  # before the save: a saved step has its validation
        save(p)  # the plan is the search state: written atomically after every step
        if not main:
            return
        timings["steps"].append({"step": p.steps[-1]["step"], "seconds": round(seconds, 3)})
        _time_monitor(timings, timings["steps"][-1], checked)
        atomic.write_json(timings_path, timings)
        if progress:
            s = p.steps[-1]
            bars.step_done(len(s["scores"]), seconds)
            print(f"step {s['step']}: removed {s['removed']}  ppl {s['ppl']:.4f}  ratio {s['ratio']:.4f}",
                  file=sys.stderr)

    if options.metric != "ppl":  # the search ranks by the metric; each step still records real perplexity
        on_step = true_ppl_steps(on_step, view, windows, options.metric, options.batch_size)
    from .methods import Job
    job = Job(view, windows, scorer, options.block_type, options.num_blocks, options.ratio, on_step,
              bars.bar if bars else None, options=options, batch_size=options.batch_size)
    with memory_guard(options):
        method.run(job, plan)
    faults = sorted({f for st in plan.steps for f in st.get("faults", [])})
    if faults and progress:
        hint = " (fp16 overflow is likely: use --dtype bf16 or fp32)" if options.dtype == "fp16" else ""
        print(f"blockprune: warning: inf/NaN perplexity for {', '.join(faults)}; ranked last{hint}", file=sys.stderr)
    plan.status = "done"
    save(plan)

    checkpoint = None
    if export and main:
        # base_model as given here: a resumed run may name the same weights by another path
        checkpoint = plan.export(net, out / "model", tokenizer=tok,
                                 meta={"base_model": model, "blockprune_version": plan.versions["blockprune"]})
    last = plan.width or (plan.steps[-1] if plan.steps else {"ppl": plan.dense["ppl"], "ratio": 0.0})
    summary = {"removed": plan.removed, "ratio": last["ratio"],
               "dense_ppl": plan.dense["ppl"], "pruned_ppl": last["ppl"], "plan": str(plan_path),
               "checkpoint": str(checkpoint) if checkpoint else None,
               "width": describe_width(plan) if plan.width is not None else None,
               "calibration": {k: plan.calibration[k] for k in ("source", "windows", "seqlen", "tokens")},
               "validation": monitor.check(plan)}
    if plan.validation and summary["validation"]:
        summary["validation"]["source"] = {k: plan.validation[k] for k in ("source", "windows", "seqlen", "tokens")}
    return RunResult(out, plan, checkpoint, summary)

