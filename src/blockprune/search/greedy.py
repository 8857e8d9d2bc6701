"""Iterative greedy removal (BlockPruner, Algorithm 1): at each step score every remaining unit with it
removed, remove the lowest, repeat.

Ties are broken by execution order (the earlier block wins); a candidate whose score is NaN or inf is
ranked last and reported in the step's `faults`, never chosen while a finite one exists."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError
from . import criteria
from ..plan import Plan, Step
from ..units import LAYER, expand, layer_blocks, unit_name
from ..view import BlockView

BLOCK_TYPES = {"mha": ("attn",), "mlp": ("mlp",), "mix": ("attn", "mlp")}


@dataclass(frozen=True)
class Unit:
    name: str  # "attn.3" or "layer.3"
    blocks: frozenset[str]
    index: int  # execution order of its first block
    params: int


def candidate_units(view: BlockView, granularity: str = "block", block_type: str = "mix") -> list[Unit]:
    """The candidates of a search: blocks, whole layers, or ("joint") both, every block and every layer
    in execution order (a layer just before its own attention block). A block without parameters is one
    an earlier pruning already removed (a checkpoint pruned again): removing it would change nothing, so
    it is no candidate, and neither is a layer with such a block."""
    layers = [Unit(unit_name(LAYER, i), frozenset(layer_blocks(i)), 2 * i,
                   sum(view.by_name[b].params for b in layer_blocks(i)))
              for i in range(view.num_layers)]
    if granularity == "layer":
        return [u for u in layers if u.params > 0]
    kinds = BLOCK_TYPES[block_type]
    blocks = [Unit(b.name, frozenset({b.name}), b.index, b.params) for b in view.blocks
              if b.kind in kinds and b.params > 0]
    if granularity == "joint":
        whole = [u for u in layers if all(view.by_name[b].params > 0 for b in u.blocks)]
        return sorted(whole + blocks, key=lambda u: (u.index, len(u.blocks) == 1))
    return blocks


def rank_key(score: float, unit: Unit, complete: bool = True, criterion: str = "ppl",
             base: float = math.nan) -> tuple[bool, float, int, int]:
    # a score from fewer windows (a candidate that left a race) never outranks a complete one; ties go to
    # the unit that runs first, and at one position to the larger (a layer before its attention block)
    return (not complete, criteria.value(criterion, score, base, unit.params), unit.index, -len(unit.blocks))


def budget_check(candidates: list[Unit], num_blocks: int | None) -> None:
    if num_blocks is not None and num_blocks > len(candidates):
        raise UserError(f"--num-blocks {num_blocks} is more than the {len(candidates)} candidate units; "
                        f"choose at most {len(candidates)}")


def fits(unit: Unit, removed_params: int, total_params: int, ratio: float | None) -> bool:
    return ratio is None or removed_params + unit.params <= ratio * total_params


def step_pool(view: BlockView, candidates: list[Unit], removed_blocks: frozenset[str],
              ratio: float | None) -> list[Unit]:
    """The candidates a step scores: those sharing no block with what is removed (with joint candidates, a
    layer whose attention block is gone is none) and fitting the budget."""
    removed_params = view.removed_params(removed_blocks)
    return [u for u in candidates if not u.blocks & removed_blocks
            and fits(u, removed_params, view.total_params, ratio)]


def same_steps(plan: Plan, view: BlockView, candidates: list[Unit], *, num_blocks: int | None,
               ratio: float | None) -> int:
    """How many of `plan`'s first steps a greedy run with this budget takes alike. A greedy step never looks
    ahead, so the budget changes it only through which candidates fit: step k is the same under another
    budget exactly when it scores the same pool (each step records every candidate it scored), and it is
    one the budget still allows (--num-blocks). A run extended to a larger budget keeps these steps and
    searches on from there."""
    for k, step in enumerate(plan.steps):
        removed = frozenset(b for s in plan.steps[:k] for b in expand(s["removed"]))
        if (num_blocks is not None and k >= num_blocks
                or {u.name for u in step_pool(view, candidates, removed, ratio)} != set(step["scores"])):
            return k
    return len(plan.steps)


def greedy(view: BlockView, scorer, plan: Plan, candidates: list[Unit], *, num_blocks: int | None,
           ratio: float | None, on_step: Callable[[Plan, float], None] | None = None,
           progress_factory=None, criterion: str = "ppl") -> Plan:
    """Extend `plan.steps` until `num_blocks` units are gone or no unit fits under `ratio`, each step
    removing the candidate `criterion` ranks first (`search.criteria`). A candidate sharing a block with
    what is already removed is none (with joint candidates, a layer whose attention block is gone).

    Resumes from whatever steps the plan already holds."""
    import time

    budget_check(candidates, num_blocks)
    sized = criterion in criteria.SIZED
    while True:
        done = {s["removed"] for s in plan.steps}
        removed_blocks = plan.removed_blocks
        removed_params = view.removed_params(removed_blocks)
        if num_blocks is not None and len(done) >= num_blocks:
            break
        pool = step_pool(view, candidates, removed_blocks, ratio)
        if not pool:
            break
        t0 = time.perf_counter()
        step_no = len(plan.steps) + 1
        bar = progress_factory(step_no, len(pool)) if progress_factory else None
        scored = scorer.score(removed_blocks, [u.blocks for u in pool], progress=bar.update if bar else None,
                              **({"sizes": [u.params for u in pool]} if sized else {}))
        if bar:
            bar.close()
        base = plan.steps[-1]["ppl"] if plan.steps else plan.dense.get("ppl", math.nan)
        order = sorted(range(len(pool)), key=lambda i: rank_key(scored.scores[i], pool[i], scored.complete(i),
                                                                criterion, base))
        best = pool[order[0]]
        best_score = scored.scores[order[0]]
        faults = [pool[i].name for i, s in enumerate(scored.scores) if not math.isfinite(s)]
        if not math.isfinite(best_score):
            raise UserError(f"step {step_no}: every candidate's perplexity is inf or NaN "
                            f"({', '.join(faults)}); try --dtype fp32")
        new_removed = removed_params + best.params
        plan.steps.append(Step(
            step=step_no,
            removed=best.name,
            ppl=best_score,
            ratio=new_removed / view.total_params,
            scores={u.name: (s if math.isfinite(s) else None) for u, s in zip(pool, scored.scores)},
            evaluated_windows=scored.evaluated_windows,
            exhaustive_windows=scored.exhaustive_windows,
            faults=faults,
        ))
        if criterion != "ppl":  # the chosen unit's rank value (the plan's options name the criterion)
            plan.steps[-1]["criterion_value"] = criteria.value(criterion, best_score, base, best.params)
        if scored.windows is not None:
            plan.steps[-1]["partial"] = {u.name: n for u, n in zip(pool, scored.windows) if n < max(scored.windows)}
        if scored.precision is not None:
            plan.steps[-1]["precision"] = {**scored.precision,
                                           "decided_in_full": [pool[i].name for i in scored.decided or []]}
        if on_step:
            on_step(plan, time.perf_counter() - t0)
    return plan
