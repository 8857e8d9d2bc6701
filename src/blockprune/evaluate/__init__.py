"""Evaluation the way the pruning papers report it: test perplexity, lm-eval zero-shot accuracy, cost.

`evaluate(subject, tasks, out=...)` writes `eval.json` after every task (atomically), so an
interrupted evaluation keeps what it finished.

The standard quick subset, for comparisons on a small machine: the first QUICK_WINDOWS WikiText-2
windows and the first QUICK_DOCS documents of each zero-shot task, the same for every model."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import atomic
from ..plan import versions
from .cost import cost
from .harness import (AVERAGE_RULE, ZERO_SHOT, average, check_task_names, harness_model, run_tasks, task_scores,
                      task_specs)
from .perplexity import PPL_TASKS, test_perplexity
from .subject import Subject, load_subject, mask_in_memory

__all__ = ["evaluate", "load_subject", "mask_in_memory", "Subject", "DEFAULT_TASKS", "QUICK_WINDOWS",
           "QUICK_DOCS", "ZERO_SHOT", "PPL_TASKS", "FORMAT", "AVERAGE_RULE"]

FORMAT = "blockprune.eval/1"
DEFAULT_TASKS = ("wikitext2",) + ZERO_SHOT
QUICK_WINDOWS = 8  # first 8 WikiText-2 windows of 2048 tokens (of 140 for SmolLM2's tokenizer)
QUICK_DOCS = 100  # first 100 documents of each zero-shot task


def evaluate(subject: Subject, tasks: Sequence[str] = DEFAULT_TASKS, *, out: str | os.PathLike | None = None,
             seqlen: int = 2048, max_windows: int | None = None, limit: int | None = None,
             data_dir: str | os.PathLike | None = None, batch_size: int = 16, with_cost: bool = True,
             latency_repeats: int = 5, latency_tokens: int = 128, settings: dict[str, Any] | None = None,
             shared_prompts: bool = True, progress: bool = True) -> dict[str, Any]:
    """Evaluate `subject` on `tasks` (perplexity sets and lm-eval task names) and return the record."""
    harness_tasks = [t for t in tasks if t not in PPL_TASKS]
    check_task_names(harness_tasks)
    record: dict[str, Any] = {
        "format": FORMAT, "subject": subject.describe(),
        "settings": {"tasks": list(tasks), "seqlen": seqlen, "max_windows": max_windows, "limit": limit,
                     "batch_size": batch_size, "num_fewshot": 0,
                     "lm_eval_model": "SharedPrefixHFLM" if shared_prompts else "HFLM", **(settings or {})},
        "perplexity": {}, "zero_shot": {}, "average": None, "cost": None, "versions": _versions()}
    path = Path(out) / "eval.json" if out is not None else None

    def save() -> None:
        if path is not None:
            atomic.write_json(path, record)

    save()
    if with_cost:  # first: the peak memory it reports is then the model's, not the harness's bookkeeping
        record["cost"] = cost(subject.model, subject.tokenizer, subject.reference_params, new_tokens=latency_tokens,
                              repeats=latency_repeats, progress=progress)
        save()
    for t in (t for t in tasks if t in PPL_TASKS):
        record["perplexity"][t] = test_perplexity(subject.model, subject.tokenizer, t, seqlen=seqlen,
                                                  max_windows=max_windows, data_dir=data_dir, progress=progress)
        _say(progress, f"{t}: ppl {record['perplexity'][t]['ppl']:.4f} ({record['perplexity'][t]['windows']} windows)")
        save()
    if harness_tasks:
        lm = harness_model(subject.model, subject.tokenizer, batch_size, shared_prompts)
        for t in harness_tasks:  # one task at a time so each lands in eval.json as it finishes
            specs, origin = task_specs([t], data_dir)
            results = run_tasks(lm, specs, limit=limit)
            for name in results["results"]:
                record["zero_shot"][name] = {**task_scores(results, name), "data": origin.get(name, "hub")}
                scores = record["zero_shot"][name]
                _say(progress, f"{name}: " + "  ".join(f"{m} {v:.4f}" for m, v in scores.items()
                                                      if isinstance(v, float) and not m.endswith("_stderr")))
            record["average"] = average(record["zero_shot"])
            save()
    return record


def _versions() -> dict[str, str]:
    import lm_eval
    return {**versions(), "lm_eval": getattr(lm_eval, "__version__", "unknown")}


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr)
