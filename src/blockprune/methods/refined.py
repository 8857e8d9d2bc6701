"""A search that starts where greedy stops: BlockPruner's removal set, then local search by swaps.

Each round rates every swap "put removed unit r back, remove kept unit k instead" that leaves the model
with the same or fewer parameters (k at least as big as r, and within --ratio), estimates its calibration
perplexity from two cheap single-change passes (log ppl(S - r) + log ppl(S + k) - log ppl(S)), evaluates
the `top` most promising swaps exactly and takes the best one if it lowers calibration perplexity.
It stops when no evaluated swap helps or after `rounds` swaps. A swap is accepted only on an exact,
strictly lower perplexity, so the result is never worse than greedy's.

The plan keeps greedy's steps; a swapped-in unit takes the place of the unit it replaced, and every
step from the first swapped position on gets the perplexity and ratio of its new prefix (`refined`,
with greedy's choice kept as `greedy_removed`). The last step's `refine` records the swaps and the
candidate-windows the refinement spent on top of greedy's. Each accepted swap is saved in the plan
(the last step's `refine_progress`, dropped at the end), so a killed run resumes after its last accepted
swap; a round is an hour at the paper's calibration on a 2-core CPU."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

from ..errors import UserError
from ..window_nll import perplexity
from ..search import candidate_units, greedy
from ..search.greedy import Unit
from .registry import Job, MethodDefaults, register


def _blocks(names, by: dict[str, Unit]) -> frozenset[str]:
    return frozenset(b for n in names for b in by[n].blocks)


@dataclass(frozen=True)
class Refined(MethodDefaults):
    name: str = "blockpruner-refined"
    granularity: str = "block"
    summary: str = "BlockPruner's greedy result improved by perplexity-guided swaps (never worse than greedy)"
    rounds: int = 3  # swaps accepted at most
    top: int = 8  # swaps evaluated exactly per round
    uses_scorer: ClassVar[bool] = True
    iterative: ClassVar[bool] = True  # its greedy phase: one step per removal

    def run(self, job: Job, plan):
        if getattr(job.scorer, "metric", "ppl") != "ppl":
            raise UserError(f"{self.name} searches on calibration perplexity; use --metric ppl")
        if plan.steps and "refine" in plan.steps[-1]:
            return plan  # a resumed run that already finished refining
        cands = candidate_units(job.view, "block", job.block_type)
        greedy(job.view, job.scorer, plan, cands, num_blocks=job.num_blocks, ratio=job.ratio,
               on_step=job.on_step, progress_factory=job.progress_factory)
        if plan.steps:
            self.refine(job, plan, cands)
        return plan

    def refine(self, job: Job, plan, cands: list[Unit]) -> None:
        t0 = time.perf_counter()
        view, scorer = job.view, job.scorer
        by = {u.name: u for u in cands}
        budget = None if job.ratio is None else job.ratio * view.total_params
        last = plan.steps[-1]
        greedy_ppl = last["ppl"]
        greedy_validation = last.get("validation_ppl")  # the overfitting monitor's, when it runs
        # a resumed run continues after the last accepted swap; its time so far counts in the refinement's
        saved = last.get("refine_progress", {"order": list(plan.removed), "ppl": greedy_ppl, "swaps": [],
                                              "evaluated_windows": 0, "exhaustive_windows": 0, "seconds": 0.0})
        order, cur, swaps = list(saved["order"]), saved["ppl"], list(saved["swaps"])
        spent = {"evaluated_windows": saved["evaluated_windows"], "exhaustive_windows": saved["exhaustive_windows"]}

        def score(base: frozenset[str], sets: list[frozenset[str]], exact: bool = False) -> list[float]:
            """Calibration perplexities; with `exact`, a score a racing scorer left on fewer windows is inf:
            racing dropped it as clearly worse than another of `sets`, and a partial score is never accepted."""
            s = scorer.score(base, sets)
            spent["evaluated_windows"] += s.evaluated_windows
            spent["exhaustive_windows"] += s.exhaustive_windows
            return [v if math.isfinite(v) and (s.complete(i) or not exact) else math.inf for i, v in enumerate(s.scores)]

        for _ in range(len(swaps), self.rounds):
            removed = _blocks(order, by)
            params = view.removed_params(removed)
            kept = [u for u in cands if u.name not in order]
            # scorers rate non-empty candidate sets; with one unit removed, putting it back is the dense model
            restore = (score(frozenset(), [_blocks([n for n in order if n != r], by) for r in order])
                       if len(order) > 1 else [perplexity(view, job.windows)])
            add = score(removed, [u.blocks for u in kept])
            pairs = []
            for i, r in enumerate(order):
                for j, k in enumerate(kept):
                    if k.params < by[r].params or (budget is not None and params - by[r].params + k.params > budget):
                        continue
                    est = math.log(restore[i]) + math.log(add[j]) - math.log(cur)
                    if math.isfinite(est):
                        pairs.append((est, by[r].index, k.index, r, k.name))
            pairs.sort()
            best = None
            for r in dict.fromkeys(p[3] for p in pairs[:self.top]):  # grouped by r: one base per group
                ks = [p[4] for p in pairs[:self.top] if p[3] == r]
                base = _blocks([n for n in order if n != r], by)
                for k, v in zip(ks, score(base, [by[k].blocks for k in ks], exact=True)):
                    if best is None or v < best[0]:
                        best = (v, r, k)
            if best is None or not best[0] < cur:
                break
            cur, r, k = best
            order[order.index(r)] = k
            swaps.append({"out": r, "in": k, "ppl": cur})
            if job.checkpoint:
                last["refine_progress"] = {"order": list(order), "ppl": cur, "swaps": list(swaps), **spent,
                                           "seconds": round(saved["seconds"] + time.perf_counter() - t0, 3)}
                job.checkpoint(plan)

        first = next((i for i, (s, n) in enumerate(zip(plan.steps, order)) if s["removed"] != n), len(order))
        prefixes = [_blocks(order[:j + 1], by) for j in range(first, len(order) - 1)]
        # one prefix per call: each is scored on every window, whatever the scorer (a race of one is exhaustive)
        ppls = [score(frozenset(), [p], exact=True)[0] for p in prefixes] + [cur]
        for j, ppl in zip(range(first, len(order)), ppls):
            s = plan.steps[j]
            if s["removed"] != order[j]:
                s["greedy_removed"] = s["removed"]
            s.pop("validation_ppl", None)  # a new removal set: the monitor scores it again
            s.update(removed=order[j], ppl=ppl, refined=True,
                     ratio=view.removed_params(_blocks(order[:j + 1], by)) / view.total_params)
        last.pop("refine_progress", None)
        plan.steps[-1]["refine"] = {"greedy_ppl": greedy_ppl, "ppl": cur, "swaps": swaps,
                                    "rounds": self.rounds, "top": self.top, **spent}
        if greedy_validation is not None:
            plan.steps[-1]["refine"]["greedy_validation_ppl"] = greedy_validation
        if job.on_step:
            job.on_step(plan, saved["seconds"] + time.perf_counter() - t0)


register(Refined())
