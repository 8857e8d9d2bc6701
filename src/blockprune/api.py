"""The Python API: `prune` runs a method end to end into a run folder; `load` reads a checkpoint back.

`prune` only orchestrates: load the model and the windows, start (or resume) the plan, build a scorer if
the method declares it uses one, let the method extend the plan step by step (each step saved, timed and
checked by the monitor), export. What a method does and which options it takes, it declares itself."""
from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import atomic, estimate, machine, models, monitor, scoring, timings
from .data import load_windows
from .errors import UserError
from .export import load
from .methods import Job, Method
from .models import check_device
from .options import PruneOptions, as_given, resume_check
from .window_nll import perplexity
from .plan import Plan
from .progress import Budget, RunProgress
from .scoring.distributed import SplitScorer, init_from_env
from .search.greedy import budget_check, candidate_units
from .view import BlockView
from .words import count, differences

__all__ = ["PruneOptions", "RunResult", "prune", "load"]


@dataclass
class RunResult:
    out: Path
    plan: Plan
    checkpoint: Path | None
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def memory_guard(options: PruneOptions):
    """Out of accelerator memory: say which options reduce memory instead of a stack trace."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        raise UserError(f"out of accelerator memory (batch size {options.batch_size}, {options.dtype}); reduce "
                        f"--batch-size, keep the cache in CPU memory with --cache-device cpu, store fewer "
                        f"boundaries with --cache-every, or use --dtype bf16") from e


def prune(model: str = models.DEFAULT_MODEL, out: str | os.PathLike = "runs/blockprune", *,
          options: PruneOptions | None = None, data_dir: str | os.PathLike | None = None, device: str = "cpu",
          resume: bool = False, export: bool = True, progress: bool = True, force: bool = False,
          **option_overrides) -> RunResult:
    """Run a pruning method on `model` and write `out/plan.json` and the pruned checkpoint `out/model`.

    Options are a `PruneOptions` or its fields as keywords (`num_blocks=12`, `block_type="mix"`, ...).
    Before any weight loads, the run's peak memory is estimated from the model's config
    (`blockprune.estimate`); a run that would not fit is refused (a UserError naming the options that
    would fit) unless `force`."""
    given = options is None  # keywords name options for this one run; compare passes options its methods share
    options = options or PruneOptions(**option_overrides)
    options.validate()
    if given:
        options.check_all_used()
    if device != "auto":  # auto: accelerate places the model on whatever there is
        check_device(device)
    asked = options
    options = options.resolved(device)
    out = Path(out)
    plan_path = out / "plan.json"
    if plan_path.exists() and not resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not plan_path.exists():  # a mistyped --out would otherwise start a whole new search
        raise UserError(f"nothing to resume in {out} (no plan.json); check --out, or drop --resume to start "
                        f"a new run (a run killed before its first save left nothing to resume)")
    atomic.check_writable(out)  # a folder that cannot be written fails now, not after the search
    if not force:  # from the config alone: refused before any weight loads, nothing written
        estimate.check(model, asked, device, data_dir, out)
    with _disk_cache(out, options) as options:
        return _run(model, out, options, data_dir, device, resume, export, progress, plan_path)


@contextmanager
def _disk_cache(out: Path, options: PruneOptions):
    """--cache-device disk: the boundary caches' memory-mapped files go in a temporary folder inside `out`
    (each file is unlinked once mapped, so a killed run leaves none behind), removed at the end."""
    if options.cache_device != "disk":
        yield options
        return
    import shutil
    import tempfile

    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".cache-", dir=out))
    try:
        yield replace(options, cache_device=f"disk:{folder}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if made and not any(out.iterdir()):  # a run refused before writing anything leaves no folder
            out.rmdir()


def _run(model: str, out: Path, options: PruneOptions, data_dir, device: str, resume: bool, export: bool,
         progress: bool, plan_path: Path) -> RunResult:

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
    method = options.chosen_method
    rank, world = init_from_env()
    main = rank == 0  # with torchrun, every rank searches in lockstep and rank 0 alone writes
    progress = progress and main
    if method.granularity in ("block", "layer"):  # refuse before anything is written
        pool = candidate_units(view, method.granularity, options.block_type if method.granularity == "block" else "mix")
        budget_check(pool, options.num_blocks)
    fresh = Plan(method=method.name, model={"source": model, "family": net.config.model_type,
                                            "params": view.total_params, "layers": view.num_layers,
                                            "sha256": models.fingerprint(net)},
                 calibration=windows.describe(), options=options.recorded(),
                 validation=vwindows.describe() if vwindows else None)
    method.check_inputs(fresh, view, options)
    plan = _start_plan(fresh, plan_path, resume, method, options, view, progress)
    if method.granularity in ("block", "layer"):  # after a resume's own check: a saved run says what differs
        _refuse_empty(view, pool, options)

    if resume and progress:
        saved = count(len(plan.steps), "step")
        print(f"blockprune: resuming {out}: its search had finished ({saved} saved), finishing the run" if plan.status == "done"
              else f"blockprune: resuming {out} from step {len(plan.steps) + 1} ({saved} saved)", file=sys.stderr)
    scorer = None  # built only for a method that scores through one: its cache embeds every window up front
    if method.uses_scorer:
        with memory_guard(options):
            scorer = scoring.make_scorer(view, windows, options)
        if world > 1:
            scorer = SplitScorer(scorer, rank, world)

    budget = None  # --ratio: the number of steps is estimated from the parameter budget
    if options.ratio is not None and method.iterative and method.granularity in ("block", "layer"):
        budget = Budget(view.total_params, options.ratio, {u.name: u.params for u in pool}, set(plan.removed))
    bars = RunProgress(len(windows), options.num_blocks if method.iterative else None,
                       races=scorer is not None and options.metric == scoring.PERPLEXITY
                       and scoring.get(options.scorer).races, budget=budget) if progress else None
    recorder = _StepRecorder(out, plan_path, main, resume, len(plan.steps), bars,
                             monitor.Monitor(view, vwindows, options.batch_size) if vwindows and main else None)
    if not plan.dense:
        with memory_guard(options):
            dense = perplexity(view, windows, batch_size=options.batch_size)
        if not math.isfinite(dense):
            hint = "fp16 overflows on this model: use --dtype bf16 or fp32" if options.dtype == "fp16" else \
                "check the model and the calibration text"
            raise UserError(f"the unpruned model's calibration perplexity is {dense}; {hint}")
        plan.dense = {"ppl": dense}
    recorder.dense(plan)

    on_step = recorder.step
    if options.metric != scoring.PERPLEXITY:  # the search ranks by the metric; each step still records real perplexity
        on_step = scoring.true_ppl_steps(on_step, view, windows, options.metric, options.batch_size)
    job = Job(view, windows, scorer, options.block_type, options.num_blocks, options.ratio,
              on_step,
              bars.bar if bars else None, options=options, batch_size=options.batch_size, checkpoint=recorder.save)
    with memory_guard(options):
        method.run(job, plan)
    faults = sorted({f for st in plan.steps for f in st.get("faults", [])})
    if faults and progress:
        hint = " (fp16 overflow is likely: use --dtype bf16 or fp32)" if options.dtype == "fp16" else ""
        print(f"blockprune: warning: inf/NaN perplexity for {', '.join(faults)}; ranked last{hint}", file=sys.stderr)
    plan.status = "done"
    recorder.save(plan)

    checkpoint = None
    if export and main:
        # base_model as given here: a resumed run may name the same weights by another path
        # the last use of the dense model: a width plan narrows it in place, not a copy
        checkpoint = plan.export(net, out / "model", tokenizer=tok, in_place=True,
                                 meta={"base_model": model, "blockprune_version": plan.versions["blockprune"]})
    return RunResult(out, plan, checkpoint, _summary(plan, method, plan_path, checkpoint))


def _refuse_empty(view: BlockView, pool: list, options: PruneOptions) -> None:
    """Refuse a run certain to remove every layer, or every attention block (nothing would read the
    context): --num-blocks as many as there are candidates, or a --ratio whose budget fits them all."""
    total = sum(u.params for u in pool)
    if options.num_blocks is not None:
        if options.num_blocks < len(pool):
            return
        given, fewer = f"--num-blocks {options.num_blocks}", f"--num-blocks {len(pool) - 1} at most"
    else:
        if total > options.ratio * view.total_params:
            return
        given, fewer = f"--ratio {options.ratio}", f"a --ratio below {total / view.total_params:.3f}"
    gone = frozenset().union(*(u.blocks for u in pool)) | {b.name for b in view.blocks if b.params == 0}
    left = [b for b in view.blocks if b.name not in gone]
    if not left:
        what = f"every layer of this {view.num_layers}-layer model"
    elif not any(b.kind == "attn" for b in left):
        what = f"every attention block of this {view.num_layers}-layer model"
    else:
        return
    raise UserError(f"{given} would remove {what}, leaving a model that cannot read its input; choose {fewer}")


def _start_plan(fresh: Plan, plan_path: Path, resume: bool, method: Method, options: PruneOptions,
                view: BlockView, progress: bool) -> Plan:
    """The new plan, or the one to resume when it was made with the same inputs (the method's `extendable`
    options, which set only how long its search runs, may change if its state can follow)."""
    # what a kill mid-write left, the first save's included (that run left no plan.json to resume)
    for written in (plan_path, plan_path.with_name(timings.FILE)):
        atomic.remove_stale(written)
    if not resume:
        return fresh
    plan = Plan.load(plan_path)
    loose, note = resume_check(plan, fresh.options, method)
    if plan.identity(loose + method.extendable) != fresh.identity(loose + method.extendable):
        # named with every option that differs, a changed budget included
        saved, given = plan.identity(loose), fresh.identity(loose)
        saved["options"], given["options"] = as_given(saved["options"]), as_given(given["options"])
        raise UserError(f"{plan_path} was made with {differences(saved, given)}; it cannot be resumed with these "
                        f"inputs (start a new --out)")
    extended = [k for k in method.extendable if plan.options.get(k) != fresh.options.get(k)]
    if extended:
        saved_steps = len(plan.steps)
        plan = method.extend(plan, options, view)
        if progress and len(plan.steps) < saved_steps:
            changed = differences({"options": {k: plan.options.get(k) for k in extended}},
                                  {"options": {k: fresh.options.get(k) for k in extended}})
            print(f"blockprune: resuming with {changed}: a run with these takes the first {len(plan.steps)} of "
                  f"the {saved_steps} saved steps alike; the search goes on from step {len(plan.steps) + 1}",
                  file=sys.stderr)
        for k in extended:  # as a fresh run with these options records them; the rest stays as it was saved
            if k in fresh.options:
                plan.options[k] = fresh.options[k]
            else:
                del plan.options[k]
    if note and progress:
        print(note, file=sys.stderr)
    return plan


class _StepRecorder:
    """After every step: the monitor's validation pass, the plan saved (it is the search state), the step's
    time in timings.json, a line on stderr. Only the main process writes."""

    def __init__(self, out: Path, plan_path: Path, main: bool, resume: bool, saved_steps: int,
                 bars: RunProgress | None, watch: monitor.Monitor | None):
        self.plan_path, self.main, self.bars, self.watch = plan_path, main, bars, watch
        self.timings = timings.Timings(out, resume, machine.describe(), write=main, steps=saved_steps)

    def save(self, plan: Plan) -> None:
        if self.main:
            plan.save(self.plan_path)

    def dense(self, plan: Plan) -> None:
        if self.watch:
            self.timings.dense_validation(self.watch.update(plan))
        self.save(plan)

    def step(self, plan: Plan, seconds: float) -> None:
        checked = self.watch.update(plan) if self.watch else None  # before the save: a saved step has its validation
        self.save(plan)
        if not self.main:
            return
        self.timings.step(plan.steps[-1]["step"], seconds, checked)
        if self.bars:
            s = plan.steps[-1]
            self.bars.step_done(len(s["scores"]), seconds, removed=s["removed"])
            print(f"step {s['step']}: removed {s['removed']}  ppl {s['ppl']:.4f}  ratio {s['ratio']:.4f}",
                  file=sys.stderr)


def _summary(plan: Plan, method: Method, plan_path: Path, checkpoint: Path | None) -> dict[str, Any]:
    final = plan.outcome
    summary = {"removed": final.removed, "ratio": final.ratio,
               "dense_ppl": plan.dense["ppl"], "pruned_ppl": final.ppl, "plan": str(plan_path),
               "checkpoint": str(checkpoint) if checkpoint else None,
               "width": method.describe(plan) if plan.width is not None else None,
               "calibration": {k: plan.calibration[k] for k in ("source", "windows", "seqlen", "tokens")},
               "validation": monitor.check(plan)}
    if plan.validation and summary["validation"]:
        summary["validation"]["source"] = {k: plan.validation[k] for k in ("source", "windows", "seqlen", "tokens")}
    return summary
