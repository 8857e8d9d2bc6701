"""A population search over removal sets at a fixed parameter budget (after EvoPress, Sieberling et al.,
ICML 2025, `evo_drop_search.py`): depth-pruning error is not monotone in the units removed, so instead of
growing one set a unit at a time, search over whole sets.

1. **Seeds.** Finished runs of other methods on the same model and calibration (in `compare`: the
   `blockpruner`, `layer-ppl` and `relative-magnitude` folders beside this one; with `prune`:
   `--seed-runs`); without any, the Relative Magnitude set, computed here. A seed that removes fewer
   parameters than the budget allows is completed by greedy BlockPruner steps (single blocks, calibration
   perplexity) until no block fits, so every set competes at the same budget. The search starts from the
   best completed seed.
2. **Generations.** A (1 + lambda) evolution: each generation makes `offspring` mutations of the parent.
   A mutation puts 1 to 3 removed blocks back (1 with probability 1/2, 2 with 3/10, 3 with 1/5) and
   removes kept blocks in a random order while they fit the budget, so it swaps like for like (an
   attention block for another), one MLP for several attention blocks, or several for one. Parent and
   offspring race over the calibration windows with racing's statistics (`scoring.racing.race`: all run
   the first window, survivors more, a clear loser leaves early): selection in rounds on growing numbers
   of windows, as EvoPress's multi-step selection. Every survivor finishes on every window and the
   lowest exact calibration perplexity becomes the parent; the parent wins ties, so the search never
   returns a set worse on calibration than its best completed seed. An offspring runs only the blocks
   from the first one where it differs from the parent (the parent's block-boundary cache).
3. **Result.** The final set's units become the plan's steps in execution order, each with the exact
   calibration perplexity of the units up to it (the path a reader can plot); `plan.search` records the
   seeds, every generation's parent perplexity, acceptance and candidate-windows (the compute, like
   racing's), and the settings.

Randomness comes from `--seed` and the generation number alone, so a run killed between generations
resumes (from `plan.search`, saved after every generation) to the same plan byte for byte. Under the
`fast` scorer the race runs in the search's own precision (its boundary cache)."""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from ..declared import Option, comma_separated
from ..errors import UserError
from ..window_nll import ppl_from_nll
from ..plan import Plan, Step
from ..scoring.racing import race
from ..search import candidate_units, greedy
from ..search.greedy import Unit
from ..units import block_index, expand
from ..view import BlockView
from .registry import Job, MethodDefaults, register

#: how many removed blocks a mutation puts back, and how often
RESTORE = ((1, 0.5), (2, 0.3), (3, 0.2))
#: seed methods `compare` hands over when their folders are finished
SEED_METHODS = ("blockpruner", "layer-ppl", "relative-magnitude")

#: --seed-runs: finished run folders whose removal sets seed the population (their sets are recorded in the
#: plan's `search`, the paths are not: they name this machine's folders); compare hands over SEED_METHODS'
SEED_RUNS = Option("seed_runs", (), type=comma_separated, record="never", commands=("prune", "estimate"),
                   help="blockpruner-evo: comma-separated finished run folders (same model and calibration) whose "
                        "removal sets seed the population; default: the Relative Magnitude set, computed first")
#: --generations: generation g's offspring depend on the seed and g alone, so a run resumed with another
#: length has the same first generations as a fresh run of that length (extendable); recorded only when
#: changed, so plans made before it stay byte-identical
GENERATIONS = Option("generations", 40, type=int, record="changed", extendable=True,
                     check=lambda n: f"--generations must be at least 0 (got {n})" if n < 0 else None,
                     help="blockpruner-evo: generations of offspring raced against the parent (compute grows with "
                          "it; a resumed run may be given more or fewer, down to those it has run)")


def mutate(parent: frozenset[str], blocks: Sequence[Unit], budget: float, rng: random.Random) -> frozenset[str]:
    """Put 1-3 of `parent`'s blocks back, then remove kept blocks in random order while they fit `budget`."""
    removed = sorted(parent, key=block_index)
    k = min(rng.choices([k for k, _ in RESTORE], weights=[w for _, w in RESTORE])[0], len(removed))
    back = set(rng.sample(removed, k))
    child = set(parent) - back
    size = {u.name: u.params for u in blocks}
    params = sum(size[b] for b in child)
    pool = [u.name for u in blocks if u.name not in child and u.name not in back]
    rng.shuffle(pool)
    for name in pool:
        if params + size[name] <= budget:
            child.add(name)
            params += size[name]
    return frozenset(child)


def boundary_cache(scorer):
    """The search-precision block-boundary cache of an incremental, racing or two-precision scorer."""
    for path in (("cache",), ("racing", "cache"), ("full",)):
        obj = scorer
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None:
            return obj
    raise UserError("blockpruner-evo runs offspring from the parent's block-boundary cache: use --scorer incremental, "
                    "racing or fast (not plain, and not across processes)")


@dataclass(frozen=True)
class Evolution(MethodDefaults):
    name: str = "blockpruner-evo"
    granularity: str = "block"
    summary: str = ("population search over removal sets at the --ratio budget, seeded with other methods' sets "
                    "(EvoPress-style mutations, racing selection; never worse on calibration than its best seed)")
    offspring: int = 16
    uses_scorer: ClassVar[bool] = True
    iterative: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = (SEED_RUNS, GENERATIONS)

    def validate(self, options: Any) -> None:
        if options.num_blocks is not None:
            raise UserError(f"--method {self.name} searches sets at a parameter budget: give --ratio instead of "
                            f"--num-blocks")
        if options.block_type != "mix":
            raise UserError(f"--method {self.name} swaps attention and MLP blocks; drop --block-type {options.block_type}")
        if options.metric != "ppl":
            raise UserError(f"--method {self.name} selects by calibration perplexity; drop --metric {options.metric}")
        if options.scorer == "plain":  # boundary_cache's refusal, made before anything is written
            raise UserError(f"--method {self.name} runs offspring from the parent's block-boundary cache, which "
                            f"--scorer plain does not keep: use --scorer incremental, racing or fast")
        for run in options.seed_runs:
            if not (Path(run) / "plan.json").exists():
                raise UserError(f"--seed-runs: {run} holds no plan.json; give finished run folders of this model")

    def extend(self, plan: Plan, options: Any, view: Any = None) -> Plan:
        done = len((plan.search or {}).get("history", []))
        if plan.steps:
            raise UserError(f"this run finished after {done} generations; to run {options.generations}, start a "
                            f"new --out (seed it with this run's folder)")
        if done > options.generations:
            raise UserError(f"this run has already run {done} generations: --generations must be at least {done}")
        return plan

    def run(self, job: Job, plan: Plan) -> Plan:
        if plan.steps:
            return plan  # a resumed run that already finished
        # the clock starts earlier by the wall time of the runs this one resumes (saved with each generation)
        t0 = time.perf_counter() - (plan.search or {}).get("seconds_so_far", 0.0)
        view, cache = job.view, boundary_cache(job.scorer)
        blocks = candidate_units(view, "block", "mix")
        budget = job.ratio * view.total_params
        if plan.search is None:
            seeds = self.seeds(job, plan, blocks)
            best = min(seeds, key=lambda s: s["ppl"])  # ties: the first seed
            plan.search = {"seeds": seeds, "generations": job.options.generations, "offspring": self.offspring,
                           "evaluated_windows": sum(s.pop("evaluated_windows") for s in seeds),
                           "exhaustive_windows": sum(s.pop("exhaustive_windows") for s in seeds),
                           "parent": best["completed"], "parent_ppl": best["ppl"], "history": []}
            self._save(job, plan, t0)
        state = plan.search
        state["generations"] = job.options.generations  # a resume may change it (extend)
        races = getattr(job.scorer, "z", None)
        z = races if races is not None else math.inf  # an exact scorer: every candidate runs every window
        batches = [t.shape[0] for t in cache.batches]
        for g in range(len(state["history"]) + 1, job.options.generations + 1):
            parent = frozenset(b for u in state["parent"] for b in expand(u))
            rng = random.Random(f"blockpruner-evo/{job.options.seed}/{g}")
            children: list[frozenset[str]] = []
            for _ in range(self.offspring):
                child = mutate(parent, blocks, budget, rng)
                if child != parent and child not in children:
                    children.append(child)
            sets = [parent, *children]
            cache.sync(parent)
            firsts = [len(view.blocks)] + [min(view.by_name[b].index for b in c ^ parent) for c in children]
            spent = 0

            def look(c: int, b: int) -> torch.Tensor:
                nonlocal spent
                spent += batches[b]
                return cache.current_nll(b) if c == 0 else cache.final_nll(b, sets[c], firsts[c])

            nll = race(len(sets), batches, look, z, floor_from=8 if races is not None else 0)
            total = sum(batches)
            done = [c for c in range(len(sets)) if nll[c].numel() == total]
            best = min(done, key=lambda c: (float(nll[c].mean()), c))
            ppl = ppl_from_nll(nll[best])
            state["history"].append({"generation": g, "offspring": len(children), "accepted": best != 0,
                                     "ppl": ppl, "finished": len(done), "evaluated_windows": spent})
            state["evaluated_windows"] += spent
            state["exhaustive_windows"] += len(sets) * total
            if best != 0:
                state.update(parent=sorted(sets[best], key=block_index), parent_ppl=ppl)
            self._save(job, plan, t0)
            if job.progress_factory:  # the run's progress is shown: one line a generation
                print(f"generation {g}/{job.options.generations}: {len(children)} offspring, {spent} "
                      f"candidate-windows, parent ppl {ppl:.4f}" + (" (new parent)" if best else ""), file=sys.stderr)
        self.finish(job, plan, t0)
        return plan

    def check_inputs(self, plan: Plan, view: BlockView, options: Any) -> None:
        self._seed_plans(plan, options.seed_runs, options.ratio)

    @staticmethod
    def _seed_plans(plan: Plan, runs: tuple[str, ...], ratio: float) -> list[Plan]:
        """The finished depth plans `runs` hold, refused unless made on `plan`'s model and calibration within
        the `ratio` budget."""
        seeds = []
        for run in runs:
            seed = Plan.load(run)
            if seed.status != "done" or seed.width is not None:
                raise UserError(f"--seed-runs: {run} is not a finished depth run; finish it or leave it out")
            if (seed.model.get("sha256"), seed.calibration.get("sha256")) != (plan.model.get("sha256"),
                                                                               plan.calibration.get("sha256")):
                raise UserError(f"--seed-runs: {run} was made on another model or calibration set than this run")
            if seed.steps and seed.steps[-1]["ratio"] > ratio + 1e-12:
                raise UserError(f"--seed-runs: {run} removes {seed.steps[-1]['ratio']:.1%}, over --ratio {ratio}")
            seeds.append(seed)
        return seeds

    def seeds(self, job: Job, plan: Plan, blocks: list[Unit]) -> list[dict[str, Any]]:
        """Every seed's set as given and as completed to the budget (greedy blocks), with its perplexity."""
        given = [(seed.method, seed.removed) for seed in self._seed_plans(plan, job.options.seed_runs, job.ratio)]
        if not given:
            given.append(("relative-magnitude", self._relative_magnitude(job, plan)))
        out = []
        for method, removed in given:
            seed = Plan(method=self.name, model=plan.model, calibration=plan.calibration, options=plan.options,
                        dense=plan.dense)
            seed.steps = [Step(step=i + 1, removed=u, ppl=math.nan, ratio=0.0) for i, u in enumerate(removed)]
            greedy(job.view, job.scorer, seed, blocks, num_blocks=None, ratio=job.ratio,
                   progress_factory=job.progress_factory)
            added = seed.steps[len(removed):]
            ppl = added[-1]["ppl"] if added else self._ppl(job, seed.removed_blocks)
            out.append({"source": method, "removed": list(removed), "completed": seed.removed, "ppl": ppl,
                        "ratio": job.view.removed_params(seed.removed_blocks) / job.view.total_params,
                        "evaluated_windows": sum(s["evaluated_windows"] for s in added) + (0 if added else len(job.windows)),
                        "exhaustive_windows": sum(s["exhaustive_windows"] for s in added) + (0 if added else len(job.windows))})
        return out

    def _relative_magnitude(self, job: Job, plan: Plan) -> list[str]:
        from . import get

        seed = Plan(method="relative-magnitude", model=plan.model, calibration=plan.calibration, options={},
                    dense=plan.dense)
        get("relative-magnitude").run(Job(job.view, job.windows, None, "mix", None, job.ratio,
                                          batch_size=job.batch_size), seed)
        return seed.removed

    def _ppl(self, job: Job, removed: frozenset[str]) -> float:
        cache = boundary_cache(job.scorer)
        cache.sync(removed)
        return ppl_from_nll(torch.cat([cache.current_nll(b) for b in range(len(cache.batches))]))

    def _save(self, job: Job, plan: Plan, t0: float) -> None:
        """The search state after a generation, with the wall time so far (dropped from the finished plan,
        which must not depend on it; a resumed run counts it in its total)."""
        if job.checkpoint:
            plan.search["seconds_so_far"] = round(time.perf_counter() - t0, 3)
            job.checkpoint(plan)

    def finish(self, job: Job, plan: Plan, t0: float) -> None:
        """The final set as steps in execution order, each with its prefix's exact calibration perplexity."""
        view, state = job.view, plan.search
        # blocks: a seed's completed set (the parent until an offspring beats it) may name whole layers
        order = sorted({b for u in state["parent"] for b in expand(u)}, key=block_index)
        for i, unit in enumerate(order):
            prefix = frozenset(order[:i + 1])
            plan.steps.append(Step(step=i + 1, removed=unit, ppl=self._ppl(job, prefix), ratio=view.removed_params(prefix) / view.total_params,
                                   scores={}, evaluated_windows=len(job.windows), exhaustive_windows=len(job.windows),
                                   faults=[]))
        state.pop("seconds_so_far", None)
        if job.on_step:  # once, for the final set: the monitor scores it, timings.json gets the search's time
            job.on_step(plan, time.perf_counter() - t0)


register(Evolution())
