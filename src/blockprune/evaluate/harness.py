"""Zero-shot accuracy through lm-evaluation-harness, used as a library.

The five tasks of the BlockPruner paper (`table.ZERO_SHOT`) run from lm-eval's own task definitions (its
YAML, prompts, targets and metrics). Offline, each reads a local JSONL copy from the data folder instead of the hub:
the standard config is loaded as is and only where the documents come from is changed."""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ..data import data_dir as resolve_data_dir
from ..data import recorded_path
from ..errors import UserError

# task -> (standard YAML inside lm_eval/tasks, offline copy inside the data folder, the split it evaluates)
STANDARD = {
    "piqa": ("piqa/piqa.yaml", "eval/piqa_validation.jsonl", "validation"),
    "winogrande": ("winogrande/default.yaml", "eval/winogrande_xl_validation.jsonl", "validation"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "eval/hellaswag_validation.jsonl", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "eval/arc_easy_test.jsonl", "test"),
    "arc_challenge": ("arc/arc_challenge.yaml", "eval/arc_challenge_test.jsonl", "test"),
}


def standard_yaml(task: str) -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / STANDARD[task][0]


def standard_config(task: str) -> dict[str, Any]:
    """lm-eval's own config for a task, includes merged and `!function` entries resolved."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(standard_yaml(task), resolve_func=True)
    cfg.pop("tag", None)  # grouping metadata, not part of a task's definition
    return cfg


def offline_config(task: str, data_dir: Path) -> dict[str, Any]:
    """The standard config reading the local copy of the split it evaluates; nothing else changes."""
    _, rel, split = STANDARD[task]
    return config_with_local_split(standard_config(task), str(data_dir / rel), split)


def config_with_local_split(cfg: dict[str, Any], path: str, split: str) -> dict[str, Any]:
    """A task's config reading its evaluated split from a local JSONL file, as the hub's split.

    Only that split exists locally, so the other splits are unset: zero-shot never reads them, and
    few-shot examples then come from the same split (lm-eval leaves out the document being asked)."""
    as_test = cfg.get("test_split") == split  # the split keeps its role (test or validation)
    cfg = dict(cfg)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {split: path}},
               training_split=None, validation_split=None if as_test else split,
               test_split=split if as_test else None, fewshot_split=None)
    return cfg


def offline_task(task: str, data_dir: Path):
    from lm_eval.api.task import ConfigurableTask

    return ConfigurableTask(config=offline_config(task, data_dir))


def task_specs(tasks: Sequence[str], data_dir: str | os.PathLike | None) -> tuple[list, dict[str, str]]:
    """What to hand lm-eval for each task (a Task built from a local copy, or the name for the hub),
    and where each task's documents come from."""
    d = resolve_data_dir(data_dir)
    specs, origin = [], {}
    for t in tasks:
        if t in STANDARD and d is not None and (d / STANDARD[t][1]).exists():
            specs.append(offline_task(t, d))
            origin[t] = recorded_path(d / STANDARD[t][1])
        else:
            specs.append(t)
            origin[t] = "hub (lm-eval's standard dataset)"
    return specs, origin


def harness_model(model, tokenizer, batch_size: int = 16, shared_prompts: bool = True):
    """lm-eval's HF model class around an already-loaded model (pruned in memory or not). With
    `shared_prompts`, its subclass that runs a prompt once for all its choices (same requests and
    log-likelihoods within float rounding; 1.5x faster on SmolLM2's HellaSwag on a CPU)."""
    from lm_eval.models.huggingface import HFLM

    from .shared_prefix import SharedPrefixHFLM

    cls = SharedPrefixHFLM if shared_prompts else HFLM
    _quiet_lm_eval()
    return cls(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


class _BlockpruneCaused(logging.Filter):
    """lm-eval warnings that only say what blockprune does on purpose: it hands HFLM a loaded model (so
    that a run's plan can be applied in memory), and asks every task for zero-shot where the task's
    config leaves num_fewshot unset. Overwriting a task's own nonzero default still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg.startswith("`pretrained` model kwarg is not of type `str`"):
            return False
        return not (record.msg.startswith("Overwriting default num_fewshot") and record.args
                    and record.args[1] is None and record.args[2] == 0)


def _quiet_lm_eval() -> None:
    for name in ("lm_eval.models.huggingface", "lm_eval.evaluator"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BlockpruneCaused) for f in logger.filters):
            logger.addFilter(_BlockpruneCaused())


@functools.lru_cache(maxsize=2)
def task_manager(by_name: bool):
    """lm-eval's task index: indexing every built-in task takes seconds, so only when a task is named,
    and once per process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=by_name)


def run_tasks(lm, specs: list, *, limit: int | None = None, samples: dict[str, list[int]] | None = None,
              log_samples: bool = False, num_fewshot: int = 0) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    _quiet_lm_eval()
    manager = task_manager(any(isinstance(s, str) for s in specs))
    try:
        return simple_evaluate(model=lm, tasks=specs, num_fewshot=num_fewshot, limit=limit, samples=samples,
                               log_samples=log_samples, bootstrap_iters=1000, task_manager=manager)
    except KeyError as e:
        raise UserError(f"lm-eval does not know the task {e}; see `lm-eval ls tasks`") from e
    except OSError as e:  # connection errors included: a task's dataset is not on this machine
        names = ", ".join(s if isinstance(s, str) else s.config.task for s in specs)
        raise UserError(f"could not load the documents of {names} from the hub ({type(e).__name__}); "
                        f"pass --data-dir with offline copies (eval/*.jsonl)") from e


def task_scores(results: dict[str, Any], task: str) -> dict[str, Any]:
    """Every metric of one task from lm-eval's results, each with its standard error: acc / acc_norm for
    the five paper tasks, whatever the task defines for any other (word_perplexity, exact_match, ...).
    A metric under a filter other than lm-eval's default "none" keeps the filter in its name."""
    r = results["results"][task]
    out: dict[str, Any] = {}
    for key, value in r.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr") or not isinstance(value, (int, float)):
            continue  # "alias", or a standard error (read beside its metric)
        name = metric if filt == "none" else key
        out[name] = value
        stderr = r.get(f"{metric}_stderr,{filt}")
        out[f"{name}_stderr"] = stderr if isinstance(stderr, (int, float)) else None
    n = results.get("n-samples", {}).get(task, {})
    out["docs"] = n.get("effective")
    out["docs_total"] = n.get("original")
    return out

