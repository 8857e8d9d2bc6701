"""Methods side by side at a matched pruning ratio, in the shape of the BlockPruner paper's Table 1.

Methods remove units of different sizes (attention and MLP blocks, whole layers), so each one runs with
the same `--ratio` budget and stops at the largest removal not above it. Every method runs into its own
subfolder of `out` (`plan.json`, `eval.json`, `compare.json` with wall times); whatever a folder already
holds is kept, so a long comparison can be stopped and resumed, or run a few methods at a time (an
evaluation resumes by task: `blockprune.evaluate.resumable`).

A method is named `method`, `method:metric` (e.g. `blockpruner:bi`, the iterative search ranking by
Block Influence), `method:criterion` (`blockpruner:per-param`, ranking by perplexity rise per parameter) or,
for a width method, `method:allocation` (`llm-bip:global`: its units ranked across layers; plain `llm-bip`
runs the default, uniform), so one comparison can hold a method under both. `blockpruner-refined` starts
from the `blockpruner` folder's plan when that one is done (same calibration and options), so greedy's
search is not paid twice; its wall time is then greedy's plus the refinement's."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from . import atomic, machine, timings
from .api import PruneOptions, prune
from .errors import UserError
from .evaluate import table
from .evaluate.resumable import Evaluator, evaluate_folder, make_evaluator, missing_tasks, read
from .evaluate.table import ZERO_SHOT
from .evaluate.tasks import is_perplexity
from .scoring import metrics
from .methods import get as get_method
from .declared import names as option_names
from .options import resume_check
from .search.criteria import CRITERIA
from .width.allocation import ALLOCATIONS
from .plan import Plan

DEFAULT_METHODS = ("blockpruner", "blockpruner-refined", "blockpruner-oneshot", "layer-ppl", "shortgpt",
                   "relative-magnitude", "blockpruner:bi", "blockpruner:rm", "blockpruner:js")


@dataclass(frozen=True)
class MethodSpec:
    """One `--methods` name: the method it runs, ranked by which metric or criterion, under which allocation."""

    label: str  # "blockpruner:bi", "blockpruner:per-param", "llm-bip:global"
    method: str
    metric: str
    criterion: str = "ppl"
    allocation: str | None = None  # a width method's --allocation (None: the comparison's options)

    @property
    def folder(self) -> str:
        return self.label.replace(":", "-")


def parse_methods(spec: str | Sequence[str]) -> list[MethodSpec]:
    from .methods import METHODS

    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise UserError("--methods is empty; name at least one method")
    out = []
    for name in names:
        method, _, rank = name.partition(":")
        if method not in METHODS:
            raise UserError(f"unknown method {method!r} in --methods; choose from {', '.join(sorted(METHODS))}")
        if rank in CRITERIA and rank != "ppl":
            if "criterion" not in option_names(METHODS[method].options):
                users = [m.name for m in METHODS.values() if "criterion" in option_names(m.options)]
                raise UserError(f"{name!r}: {method} takes no criterion; criteria apply to {', '.join(users)}")
            out.append(MethodSpec(name, method, "ppl", rank))
            continue
        if rank in ALLOCATIONS:
            if "allocation" not in option_names(METHODS[method].options):
                users = [m.name for m in METHODS.values() if "allocation" in option_names(m.options)]
                raise UserError(f"{name!r}: {method} takes no allocation; allocations apply to {', '.join(users)}")
            out.append(MethodSpec(name, method, "ppl", allocation=rank))
            continue
        if rank and rank not in metrics():
            raise UserError(f"unknown metric or criterion {rank!r} in {name!r}; choose from "
                            f"{', '.join(metrics() + tuple(c for c in CRITERIA if c != 'ppl') + ALLOCATIONS)}")
        out.append(MethodSpec(name, method, rank or "ppl"))
    if len({e.label for e in out}) != len(out):
        raise UserError("--methods names a method twice")
    return out


def _done(path: Path) -> bool:
    return (path / "plan.json").exists() and Plan.load(path).status == "done"


def _warm_start(entry: MethodSpec, sub: Path, out: Path, options: PruneOptions) -> str | None:
    """Seed `blockpruner-refined`'s folder with the finished greedy plan it would recompute first."""
    source = out / "blockpruner"
    if entry.method != "blockpruner-refined" or (sub / "plan.json").exists() or not _done(source):
        return None
    plan = Plan.load(source)
    if plan.options != {**options.recorded(), "method": "blockpruner"}:
        return None  # made with other options: refined searches from scratch
    plan.method, plan.status = entry.method, "running"
    plan.options = options.recorded()
    sub.mkdir(parents=True, exist_ok=True)
    plan.save(sub / "plan.json")
    return "blockpruner"


def run_method(entry: MethodSpec, model: str, out: Path, base: PruneOptions, *, data_dir=None, device: str = "cpu",
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume, or skip) one method; returns its compare.json record."""
    sub = out / entry.folder
    record_path = sub / "compare.json"
    options = replace(base, method=entry.method, metric=entry.metric, criterion=entry.criterion,
                      allocation=entry.allocation or base.allocation, seed_runs=_seed_runs(entry, out))
    options.validate()
    options = options.resolved(device)  # per method too: one-shot's racing scorer is incremental
    if _done(sub) and record_path.exists():
        _check_reusable(Plan.load(sub), sub, model, options)
        return json.loads(record_path.read_text())
    # a warm-started folder's record is written when it is seeded; any other is written when its search ends
    record = json.loads(record_path.read_text()) if record_path.exists() else {"search_seconds": 0.0}
    warm = _warm_start(entry, sub, out, options)
    if warm:
        greedy = json.loads((out / warm / "compare.json").read_text())
        record = {"warm_start": warm, "search_seconds": greedy["search_seconds"]}
        atomic.write_json(record_path, record)
    saved = None
    if not warm and (sub / "plan.json").exists():  # a killed search resumes: what its saved state took counts
        saved = Plan.load(sub), timings.load(sub / timings.FILE, warn=False)
    _say(progress, f"compare: {entry.label}: searching")
    record.setdefault("machines", []).append(machine.describe())  # each invocation's machine: times differ by CPU
    t0 = time.perf_counter()
    final = prune(model, sub, options=options, data_dir=data_dir, device=device, resume=saved is not None or bool(warm),
                  export=False, progress=progress).plan
    record["search_seconds"] += time.perf_counter() - t0  # a resumed search adds to what its parts took
    if saved is not None:  # after the run: one resumed under a new budget keeps only the saved steps it shares
        record["search_seconds"] += _saved_seconds(*saved, final)
    atomic.write_json(record_path, record)
    return record


def _seed_runs(entry: MethodSpec, out: Path) -> tuple[str, ...]:
    """A population search is seeded with the finished sets of the methods beside it (their folders)."""
    from .methods.evolution import SEED_METHODS

    if "seed_runs" not in option_names(get_method(entry.method).options):
        return ()
    return tuple(str(out / m) for m in SEED_METHODS if _done(out / m))


def _saved_seconds(plan: Plan, record: dict[str, Any], final: Plan) -> float:
    """What a resumed search's saved state (`plan` and its timings `record`) took, as far as the resumed run
    `final` kept it: the steps both share with the monitor's passes (`timings.saved_seconds`), and a
    refinement's accepted swaps (its plan's `refine_progress`, written before timings.json knows of it), a
    population search's generations (its plan's `search`, likewise)."""
    shared = 0
    while shared < min(len(plan.steps), len(final.steps)) and plan.steps[shared] == final.steps[shared]:
        shared += 1
    steps = timings.seconds(record, upto=shared)
    last = plan.steps[-1:] or [{}]
    return (steps + last[0].get("refine_progress", {}).get("seconds", 0.0)
            + (plan.search or {}).get("seconds_so_far", 0.0))


def _check_reusable(plan: Plan, sub: Path, model: str, options: PruneOptions) -> None:
    """A finished folder is kept only when it answers this comparison: same model and options (the
    calibration data's hash is checked by `prune` on resume; here the options that produce it are, as a
    resume compares them: see `resume_check`)."""
    want = options.recorded()
    loose, _ = resume_check(plan, want, options.chosen_method)
    diff = [k for k in sorted(set(want) | set(plan.options)) if k not in loose and want.get(k) != plan.options.get(k)]
    if plan.model.get("source") != model:
        diff.insert(0, f"model ({plan.model.get('source')!r})")
    if diff:
        raise UserError(f"{sub} holds a finished search made with a different {', '.join(diff)}; "
                        f"choose another --out for this comparison")


def compare(model: str, out: str | os.PathLike, *, ratio: float, methods: Sequence[str] | str = DEFAULT_METHODS,
            options: PruneOptions | None = None, tasks: Sequence[str] = ("wikitext2",) + ZERO_SHOT,
            evaluator: Evaluator | None = None, eval_settings: dict[str, Any] | None = None, data_dir=None,
            device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Run every method at `ratio`, evaluate each and the dense model, write comparison.{json,md}."""
    entries = parse_methods(methods)
    base = replace(options or PruneOptions(), ratio=ratio, num_blocks=None)
    base.validate()
    base = base.resolved(device)  # refuses what no method can run (e.g. --racing-z without racing) before any search
    if evaluator is None:
        evaluator, eval_settings = make_evaluator(seqlen=2048, max_windows=None, limit=None, data_dir=data_dir,
                                                   dtype=base.dtype, device=device, progress=progress)
    eval_settings = eval_settings or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    result = {"format": "blockprune.compare/1", "model": model, "target_ratio": ratio, "tasks": list(tasks),
              "calibration": {k: base.recorded()[k] for k in ("calibration", "nsamples", "seqlen", "seed")},
              "eval": eval_settings, "rows": rows}
    # pruned model -> the first folder with it: identical ones share one evaluation, the folder's finished
    # methods from earlier invocations included (e.g. width-local, which under uniform allocation selects
    # what llm-bip selects)
    reuse: dict[tuple, Path] = {}
    for sub in finished_folders(out):
        if not missing_tasks(read(sub / "eval.json"), tasks, eval_settings):
            reuse.setdefault(Plan.load(sub).outcome.key, sub)
    for e in entries:  # search then evaluate, one method at a time: the table grows as methods finish
        sub = out / e.folder
        run = run_method(e, model, out, base, data_dir=data_dir, device=device, progress=progress)
        plan = Plan.load(sub)
        if not rows:
            # after the first search rather than before: a second process running other methods into the same
            # folder (side by side, one per core) then finds the dense model evaluated by the first
            _say(progress, "compare: dense model: evaluating")
            rows.append(method_row("dense", None, evaluate_folder(model, out / "dense", tasks, evaluator, eval_settings,
                                                            {}, None), None))
        reuse.setdefault(plan.outcome.key, sub)
        _say(progress, f"compare: {e.label}: evaluating")
        rec = evaluate_folder(str(sub), sub, tasks, evaluator, eval_settings, reuse, plan.outcome.key)
        rows[0].update(calibration_ppl=plan.dense["ppl"], validation_ppl=plan.dense.get("validation_ppl"))
        rows.append(method_row(e.label, plan, rec, run))
        # the folder's other finished methods keep their rows: a run of a few methods never drops the rest
        result["rows"] = rows[:1] + finished_rows(out, tasks, eval_settings, {r["method"] for r in rows}) + rows[1:]
        atomic.write_json(out / "comparison.json", result)
        atomic.write_text(out / "comparison.md", markdown(result))
    return result


def folder_label(plan: Plan) -> str:
    """The `--methods` name a finished plan was run under: its method, and its metric or criterion."""
    rank = plan.options.get("criterion") or plan.options.get("metric", "ppl")
    return plan.method if rank == "ppl" else f"{plan.method}:{rank}"


def finished_folders(out: Path) -> list[Path]:
    """`out`'s method folders whose search is done, by name."""
    return [sub for sub in sorted(p for p in out.iterdir() if p.is_dir() and (p / "compare.json").exists())
            if _done(sub)]


def finished_rows(out: Path, tasks: Sequence[str], eval_settings: dict[str, Any],
                  skip: set[str] = frozenset()) -> list[dict[str, Any]]:
    """Rows for every method folder of `out` whose search is done and whose evaluation holds `tasks` under
    `eval_settings`, in the order of the folder's earlier comparison.json, then by name."""
    earlier = [r["method"] for r in (read(out / "comparison.json") or {}).get("rows", [])]
    rows = []
    for sub in finished_folders(out):
        plan = Plan.load(sub)
        label = folder_label(plan)
        allocated = f"{label}:{plan.options.get('allocation')}"  # a width method run as method:allocation
        if "allocation" in plan.options and MethodSpec(allocated, plan.method, "ppl").folder == sub.name:
            label = allocated
        ev = read(sub / "eval.json")
        if label in skip or MethodSpec(label, plan.method, "ppl").folder != sub.name or missing_tasks(ev, tasks, eval_settings):
            continue
        rows.append(method_row(label, plan, ev, read(sub / "compare.json")))
    return sorted(rows, key=lambda r: (earlier.index(r["method"]) if r["method"] in earlier else len(earlier),
                                       r["method"]))


def method_row(label: str, plan: Plan | None, ev: dict, run: dict | None) -> dict[str, Any]:
    """One method's row of comparison.json, from its plan (None: the dense model), eval record and run record."""
    last = plan.steps[-1] if plan and plan.steps else None
    final = plan.outcome if plan else None
    row: dict[str, Any] = {
        "method": label,
        "ratio": final.ratio if final else 0.0,
        "removed": final.removed if final else [],
        "calibration_ppl": final.ppl if final else None,
        # the overfitting monitor's held-out perplexity of the final set, where the run had the monitor
        "validation_ppl": final.validation_ppl if final else None,
        **table.row_scores(ev),  # perplexity, zero_shot, metrics, average
        "search_seconds": run["search_seconds"] if run else None,
    }
    if run and run.get("warm_start"):
        row["warm_start"] = run["warm_start"]
    if last and "refine" in last:
        r = last["refine"]
        row["refine"] = {"greedy_ppl": r["greedy_ppl"], "swaps": r["swaps"],
                         "extra_evaluated_windows": r["evaluated_windows"]}
    return row


def markdown(result: dict[str, Any]) -> str:
    tasks = result["tasks"]
    zs = [t for t in ZERO_SHOT if t in tasks]
    custom = [t for t in tasks if not is_perplexity(t) and t not in ZERO_SHOT]
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    validation = any(r.get("validation_ppl") is not None for r in result["rows"])
    rows = [table.TableRow.of([r["method"], f"{r['ratio']:.1%}", fmt(r["calibration_ppl"], ".2f")]
                              + ([fmt(r.get("validation_ppl"), ".2f")] if validation else []), r,
                              [fmt(r["search_seconds"], ".0f")])
            for r in result["rows"]]
    lines = table.markdown_table(["Method", "Ratio", "Calib. PPL"] + (["Validation PPL"] if validation else []), rows,
                                 perplexity=[t for t in tasks if is_perplexity(t)], tasks=zs,
                                 with_average=len(zs) == len(ZERO_SHOT), other=custom, trail=["Search (s)"])
    removed = [f"- {r['method']}: {', '.join(r['removed'])}" for r in result["rows"] if r["removed"]]
    ev = result.get("eval", {})
    notes = [f"Task columns are accuracy in % (acc_norm where the task reports it, acc otherwise; a custom task's "
             f"own metric where it has neither), {table.shots_note([ev.get('num_fewshot') or 0])}."]
    if len(zs) == len(ZERO_SHOT):
        notes.append("Avg. is the BlockPruner paper's five-task average (PIQA, WinoGrande, HellaSwag, ARC-e, ARC-c)"
                     + ("; the other task columns are not part of it." if custom else "."))
    def described(settings: dict[str, Any], said: dict[str, Any]) -> str:  # the settings in words, not a dict
        parts = [said[k](v) if k in said else f"{k.replace('_', ' ')} {v}" for k, v in settings.items()
                 if k in said or v is not None]
        return ", ".join(p for p in parts if p)

    cal = dict(result["calibration"])
    calibration = described(cal, {"calibration": str, "nsamples": lambda n: f"{n} rows",
                                  "seqlen": lambda n: f"{n}-token windows", "seed": lambda n: f"seed {n}"})
    evaluation = described({k: v for k, v in ev.items() if k != "tasks"}, {
        "seqlen": lambda n: f"{n}-token perplexity windows",
        "max_windows": lambda n: "every window" if not n else f"the first {n} window{'s' if n != 1 else ''}",
        "limit": lambda n: "every document" if not n else f"the first {n} document{'s' if n != 1 else ''} of each task",
        "num_fewshot": lambda n: f"{n}-shot" if n else "zero-shot"})
    return (f"# Method comparison at a target ratio of {result['target_ratio']:.0%}\n\n"
            f"Model {result['model']}; calibration {calibration}; evaluation {evaluation or 'as recorded'}.\n"
            + "\n".join(notes) + "\n\n"
            + lines + "\n\nRemoved units (in removal order):\n\n" + "\n".join(removed) + "\n")


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr)
