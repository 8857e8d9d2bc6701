"""BlockPruner's "- search" ablation: score every block once on the dense model (perplexity with that
block masked, or whichever metric the scorer gives) and remove the lowest-scoring ones at once.

`remove_ranked` is the one-shot removal every single-pass method shares (ShortGPT, Relative Magnitude):
units go in ascending score order, each one that still fits the budget, one plan step per removal.
A step records the unit's score from the single pass, the scores of the units still in the model
(for the report's heatmap) and the calibration perplexity of the removal set so far."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

from ..window_nll import perplexity
from ..plan import Step
from ..search.greedy import Unit, budget_check, candidate_units, fits, rank_key
from .registry import Job, MethodDefaults, register


def remove_ranked(job: Job, plan, candidates: list[Unit], scores: dict[str, float], metric: str,
                  scoring_windows: int, scoring_seconds: float = 0.0) -> None:
    """Extend `plan.steps` with `candidates` in ascending score order while they fit the budget; the
    single pass's windows and seconds count in the first step's.

    Resumes: units already in the plan are skipped, and the scores come from the plan's first step."""
    budget_check(candidates, job.num_blocks)
    view = job.view
    order = sorted(candidates, key=lambda u: rank_key(scores[u.name], u))
    for u in order:
        done = set(plan.removed)
        if job.num_blocks is not None and len(done) >= job.num_blocks:
            break
        removed_params = view.removed_params(plan.removed_blocks)
        if u.name in done or not fits(u, removed_params, view.total_params, job.ratio):
            continue
        t0 = time.perf_counter()
        blocks = plan.removed_blocks | u.blocks
        first = not plan.steps
        plan.steps.append(Step(
            step=len(plan.steps) + 1,
            removed=u.name,
            ppl=perplexity(view, job.windows, blocks, job.batch_size),
            ratio=view.removed_params(blocks) / view.total_params,
            metric=metric,
            score=_json(scores[u.name]),
            scores={c.name: _json(scores[c.name]) for c in candidates if c.name not in done},
            evaluated_windows=(scoring_windows if first else 0) + len(job.windows),
            exhaustive_windows=(scoring_windows if first else 0) + len(job.windows),
            faults=[c.name for c in candidates if first and not math.isfinite(scores[c.name])],
        ))
        if job.on_step:
            job.on_step(plan, time.perf_counter() - t0 + (scoring_seconds if first else 0.0))


def _json(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no inf/NaN; the plan writes null as greedy does


def saved_scores(plan) -> dict[str, float] | None:
    """The single pass's scores, from a resumed plan's first step (None: score afresh)."""
    if not plan.steps:
        return None
    return {k: (math.inf if v is None else v) for k, v in plan.steps[0]["scores"].items()}


@dataclass(frozen=True)
class OneShot(MethodDefaults):
    name: str = "blockpruner-oneshot"
    granularity: str = "block"
    summary: str = "score every block once on the dense model, remove the lowest at once (the '- search' ablation)"
    uses_scorer: ClassVar[bool] = True
    ranks_by_metric: ClassVar[bool] = True
    complete_scores: ClassVar[bool] = True  # it removes in the order of one step's scores, all of them

    def run(self, job: Job, plan):
        cands = candidate_units(job.view, self.granularity, job.block_type)
        scores = saved_scores(plan)
        cost, t0 = 0, time.perf_counter()
        if scores is None:
            scored = job.scorer.score(frozenset(), [u.blocks for u in cands],
                                      job.progress_factory(1, len(cands)).update if job.progress_factory else None)
            scores, cost = dict(zip((u.name for u in cands), scored.scores)), scored.evaluated_windows
        remove_ranked(job, plan, cands, scores, getattr(job.scorer, "metric", "ppl"), cost, time.perf_counter() - t0)
        return plan


register(OneShot())
