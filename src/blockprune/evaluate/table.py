"""The BlockPruner paper's Table 1, in one place: its five zero-shot tasks and their titles, the five-task
average, which metric a task's column shows, and the one Markdown renderer that `report` and `compare` use.

Perplexity columns come first, then the five tasks and Avg.; custom and other lm-eval tasks get their own
columns after Avg. and are not part of it. What a table puts before and after those columns (model, ratio,
search time, % of dense) is its caller's."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .tasks import PPL_PREFIX

ZERO_SHOT = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge")
TASK_TITLES = {"piqa": "PIQA", "winogrande": "WinoGrande", "hellaswag": "HellaSwag", "arc_easy": "ARC-e",
               "arc_challenge": "ARC-c"}
PPL_TITLES = {"wikitext2": "WikiText-2", "ptb": "PTB"}
AVERAGE_RULE = ("five-task average as in the BlockPruner paper: acc_norm where the task reports it "
                "(piqa, hellaswag, arc_easy, arc_challenge), acc otherwise (winogrande)")


def ppl_title(task: str) -> str:
    """A perplexity column's name: WikiText-2, PTB, or a local text's file name."""
    return PPL_TITLES.get(task) or Path(task[len(PPL_PREFIX):] if task.startswith(PPL_PREFIX) else task).name


def task_metric(scores: dict[str, Any]) -> str | None:
    """The metric a task's column shows: the paper's rule (acc_norm where the task reports it, acc
    otherwise), else a task's first own metric (a custom task's exact_match, f1, ...)."""
    for m in ("acc_norm", "acc"):
        if m in scores:
            return m
    return next((m for m, v in scores.items() if isinstance(v, (int, float)) and not m.endswith("_stderr")
                 and m not in ("docs", "docs_total", "num_fewshot")), None)


def task_score(scores: dict[str, Any]) -> float | None:
    m = task_metric(scores)
    return scores[m] if m else None


def average(scores: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The paper's five-task average, or None unless all five tasks were scored."""
    if not all(t in scores for t in ZERO_SHOT):
        return None
    metrics = {t: task_metric(scores[t]) for t in ZERO_SHOT}
    value = sum(scores[t][m] for t, m in metrics.items()) / len(ZERO_SHOT)
    return {"value": value, "metrics": metrics, "rule": AVERAGE_RULE}


def row_scores(ev: dict[str, Any]) -> dict[str, Any]:
    """An eval record's figures as a table row holds them (the scores of compare's comparison.json rows, and
    what `TableRow.of` renders): each perplexity set's perplexity, each task's score (`task_score`) and the
    metric it is, and the paper's five-task average (None unless all five were scored)."""
    zs = ev.get("zero_shot", {})
    return {"perplexity": {t: v["ppl"] for t, v in ev.get("perplexity", {}).items()},
            "zero_shot": {t: task_score(v) for t, v in zs.items()},
            "metrics": {t: task_metric(v) for t, v in zs.items()},
            "average": (average(zs) or {}).get("value")}


def is_accuracy(metric: str | None) -> bool:
    """Shown in %: accuracies and other scores in [0, 1] (perplexities and the like are shown as they are)."""
    return bool(metric) and metric.split(",")[0] in ("acc", "acc_norm", "exact_match", "f1", "mcc", "em")


def shots_note(shots: Iterable[int]) -> str:
    """How many examples each prompt held: the papers' zero-shot, or the few-shot the rows were run with."""
    shots = sorted(set(shots))
    if shots == [0]:
        return "zero-shot"
    return f"{shots[0]}-shot" if len(shots) == 1 else f"mixed shots ({', '.join(map(str, shots))}): compare with care"


def number(x: float | None, pct: bool = False) -> str:
    """A table cell: two decimals (x 100 for a percentage), a dash where nothing was measured."""
    if x is None:
        return "–"
    return f"{100 * x:.2f}" if pct else f"{x:.2f}"


@dataclass
class TableRow:
    """One model's row: the caller's cells before and after the scores, and the scores by task name."""

    lead: list[str]
    perplexity: dict[str, float | None] = field(default_factory=dict)
    tasks: dict[str, float | None] = field(default_factory=dict)  # zero-shot and other lm-eval tasks
    metrics: dict[str, str | None] = field(default_factory=dict)  # the metric each task's score is
    average: float | None = None
    trail: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, lead: Sequence[str], scores: dict[str, Any], trail: Sequence[str] = ()) -> TableRow:
        """A row from `row_scores`' shape (a row of comparison.json holds it too)."""
        return cls(list(lead), scores["perplexity"], scores["zero_shot"], scores.get("metrics", {}),
                   scores["average"], list(trail))


def markdown_table(lead: Sequence[str], rows: Sequence[TableRow], *, perplexity: Sequence[str],
                   tasks: Sequence[str] = ZERO_SHOT, with_average: bool = True, other: Sequence[str] = (),
                   trail: Sequence[str] = ()) -> str:
    """The Table-1 layout: `lead` titles, perplexity columns, the paper's `tasks` and Avg., `other` tasks
    (titled with their metric unless it is acc or acc_norm, in % when it is a score in [0, 1]), `trail`."""
    metric = {t: next((r.metrics.get(t) for r in rows if r.metrics.get(t)), None) for t in other}
    head = (list(lead) + [f"{ppl_title(t)} PPL" for t in perplexity] + [TASK_TITLES[t] for t in tasks]
            + (["Avg."] if with_average else [])
            + [t if metric[t] in (None, "acc", "acc_norm") else f"{t} ({metric[t]})" for t in other] + list(trail))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.lead + [number(r.perplexity.get(t)) for t in perplexity]
                 + [number(r.tasks.get(t), pct=True) for t in tasks]
                 + ([number(r.average, True)] if with_average else [])
                 + [number(r.tasks.get(t), pct=is_accuracy(metric[t])) for t in other] + r.trail)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
