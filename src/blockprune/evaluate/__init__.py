"""Evaluation the way the pruning papers report it: test perplexity, lm-eval zero-shot accuracy, cost.

`evaluate(subject, tasks, out=...)` writes `eval.json` after every task (atomically), so an
interrupted evaluation keeps what it finished; nothing is written before the first figure, so an
evaluation that fails at the start leaves no file behind. It names the machine it ran on (`machines`:
`blockprune.machine`'s record, with what was measured there and in how many seconds) and its inputs as
given or relative to the working directory, never by an absolute path. `evaluate_model(target, tasks)` is
the same from a run folder, checkpoint or model name, with the tasks checked before the model loads.

The standard quick subset, for comparisons on a small machine: the first QUICK_WINDOWS WikiText-2
windows and the first QUICK_DOCS documents of each zero-shot task, the same for every model."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .. import atomic, machine
from ..data import recorded_path
from ..errors import UserError
from ..plan import versions
from ..words import count
from .cost import cost
from .harness import harness_model, run_tasks, task_scores
from .perplexity import PPL_TASKS, test_perplexity
from .subject import Subject, load_subject, mask_in_memory
from .table import AVERAGE_RULE, ZERO_SHOT, average
from .tasks import PPL_PREFIX, Prepared, ppl_source, prepare

__all__ = ["evaluate", "evaluate_model", "check_num_fewshot", "prepare", "Prepared", "load_subject",
           "mask_in_memory", "Subject", "DEFAULT_TASKS", "QUICK_WINDOWS", "QUICK_DOCS", "ZERO_SHOT", "PPL_TASKS",
           "PPL_PREFIX", "FORMAT", "AVERAGE_RULE", "average"]

FORMAT = "blockprune.eval/1"
DEFAULT_TASKS = ("wikitext2",) + ZERO_SHOT
QUICK_WINDOWS = 8  # first 8 WikiText-2 windows of 2048 tokens (of 140 for SmolLM2's tokenizer)
QUICK_DOCS = 100  # first 100 documents of each zero-shot task


def check_num_fewshot(num_fewshot: int) -> None:
    """Examples per prompt: 0 (the papers' zero-shot) or more. `evaluate` checks it, and eval and compare
    before any work (`commands.read_evaluation`)."""
    if num_fewshot < 0:
        raise UserError(f"--num-fewshot must be at least 0 (got {num_fewshot})")


def evaluate(subject: Subject, tasks: Sequence[str] | Prepared = DEFAULT_TASKS, *,
             out: str | os.PathLike | None = None, seqlen: int = 2048, max_windows: int | None = None,
             limit: int | None = None, data_dir: str | os.PathLike | None = None,
             include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None, num_fewshot: int = 0,
             batch_size: int = 16, with_cost: bool = True, latency_repeats: int = 5, latency_tokens: int = 128,
             settings: dict[str, Any] | None = None, shared_prompts: bool = True,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate `subject` on `tasks` (perplexity sets, `ppl:FILE` and lm-eval task names, or what
    `prepare` made of them) and return the record."""
    check_num_fewshot(num_fewshot)
    if not isinstance(tasks, Prepared):
        tasks = prepare(tasks, include_path=include_path, data_dir=data_dir)
    record: dict[str, Any] = {
        "format": FORMAT, "subject": subject.describe(),
        "settings": {"tasks": list(tasks.tasks), "seqlen": seqlen, "max_windows": max_windows, "limit": limit,
                     "batch_size": batch_size, "num_fewshot": num_fewshot,
                     "include_path": [recorded_path(p) for p in tasks.include_path],
                     "lm_eval_model": "SharedPrefixHFLM" if shared_prompts else "HFLM", **(settings or {})},
        "perplexity": {}, "zero_shot": {}, "average": None, "cost": None, "versions": _versions()}
    # the machine this evaluation ran on, what it measured there and in how many seconds: an evaluation
    # finished in parts (compare resumes one) lists one entry per part, as their machines may differ
    ran = {"measured": [], "seconds": 0.0, **machine.describe()}
    record["machines"] = [ran]
    path = Path(out) / "eval.json" if out is not None else None
    t0 = time.perf_counter()

    def save(*figures: str) -> None:  # after each figure: an interrupted evaluation keeps what it finished
        ran["measured"] += figures  # as filed: "cost", perplexity sets, each member of a task group
        ran["seconds"] = time.perf_counter() - t0
        if path is not None:
            atomic.write_json(path, record)

    if with_cost:  # first: the peak memory it reports is then the model's, not the harness's bookkeeping
        record["cost"] = cost(subject.model, subject.tokenizer, subject.reference_params, new_tokens=latency_tokens,
                              repeats=latency_repeats, progress=progress)
        save("cost")
    for t in tasks.perplexity:
        r = test_perplexity(subject.model, subject.tokenizer, ppl_source(t), seqlen=seqlen, max_windows=max_windows,
                            data_dir=data_dir, progress=progress)
        record["perplexity"][t] = r if t in PPL_TASKS else {**r, "path": recorded_path(ppl_source(t))}
        _say(progress, f"{t}: ppl {r['ppl']:.4f} ({count(r['windows'], 'window')})")
        save(t)
    if tasks.harness:
        lm = harness_model(subject.model, subject.tokenizer, batch_size, shared_prompts)
        for t, built in tasks.harness.items():  # one task at a time so each lands in eval.json as it finishes
            results = run_tasks(lm, built, limit=limit, num_fewshot=num_fewshot)
            # a group's aggregate row is left out: its member tasks are recorded one by one
            filed = [name for name in results["results"] if name in {b.task_name for b in built}]
            for name in filed:
                shots = results.get("n-shot", {}).get(name)
                record["zero_shot"][name] = {**task_scores(results, name), "data": tasks.origin[t],
                                             "num_fewshot": shots if isinstance(shots, int) else num_fewshot}
                scores = record["zero_shot"][name]
                _say(progress, f"{name}: " + "  ".join(f"{m} {v:.4f}" for m, v in scores.items()
                                                      if isinstance(v, float) and not m.endswith("_stderr")))
            record["average"] = average(record["zero_shot"])
            save(*filed)
    save()  # an evaluation with nothing to measure still says so
    return record


def evaluate_model(target: str | os.PathLike, tasks: Sequence[str] = DEFAULT_TASKS, *,
                   include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                   num_fewshot: int = 0, data_dir: str | os.PathLike | None = None,
                   out: str | os.PathLike | None = None, limit: int | None = None, max_windows: int | None = None,
                   seqlen: int = 2048, with_cost: bool = False, dtype: str = "fp32", device: str = "cpu",
                   progress: bool = False) -> dict[str, Any]:
    """Evaluate a run folder (its plan applied in memory), a pruned checkpoint or a model on named tasks,
    as `blockprune eval` does, and return the eval.json record (written to `out/eval.json` when given).

    `tasks` mixes `wikitext2`, `ptb`, `ppl:FILE` (any local .txt/.json/.jsonl text) and lm-eval task names,
    including those defined by the task YAMLs in `include_path`. They are checked, and their documents
    loaded, before the model is. Cost figures (latency, memory) only with `with_cost=True`."""
    prepared = prepare(tasks, include_path=include_path, data_dir=data_dir)
    subject = load_subject(str(target), dtype, device)
    return evaluate(subject, prepared, out=out, seqlen=seqlen, max_windows=max_windows, limit=limit,
                    data_dir=data_dir, num_fewshot=num_fewshot, with_cost=with_cost, progress=progress,
                    settings={"dtype": dtype, "device": device})


def _versions() -> dict[str, str]:
    import lm_eval
    return {**versions(), "lm_eval": getattr(lm_eval, "__version__", "unknown")}


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr)
