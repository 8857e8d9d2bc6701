"""The population search (blockpruner-evo): deterministic for a seed, never worse than its best seed,
resumed between generations to the same plan, seeded from run folders through prune and compare."""
import dataclasses
import json

import pytest

from blockprune.errors import UserError
from blockprune.methods import Job
from blockprune.methods.evolution import Evolution, mutate
from blockprune.options import PruneOptions
from blockprune.plan import Plan
from blockprune.scoring.incremental import IncrementalScorer
from blockprune.scoring.racing import RacingScorer
from blockprune.search import candidate_units
from blockprune.units import expand
from conftest import tiny_llama
from test_criteria import plan_with_dense, setup

SMALL = Evolution(offspring=6)
GENERATIONS = 6


def run(method=SMALL, scorer=IncrementalScorer, seed=42, checkpoint=None, plan=None, n=6, generations=GENERATIONS):
    view, w = setup(tiny_llama(5, layers=5), n=n)
    plan = plan or plan_with_dense(view, w)
    job = Job(view, w, scorer(view, w), "mix", None, 0.3,
              options=PruneOptions(method=method.name, ratio=0.3, seed=seed, generations=generations),
              checkpoint=checkpoint)
    return method.run(job, plan), view


def test_mutations_stay_within_the_budget_and_fill_it():
    view, _ = setup(tiny_llama(5, layers=5))
    blocks = candidate_units(view)
    size = {u.name: u.params for u in blocks}
    budget = 0.3 * view.total_params
    parent = frozenset({"attn.1", "mlp.3", "attn.4"})
    import random
    rng = random.Random(0)
    for _ in range(50):
        child = mutate(parent, blocks, budget, rng)
        params = sum(size[b] for b in child)
        assert params <= budget and child != parent
        # full: no kept block that was not just put back fits any more
        back = parent - child
        assert all(params + size[u.name] > budget for u in blocks if u.name not in child and u.name not in back)


def test_the_search_is_deterministic_for_a_seed_and_moves_with_it():
    a, _ = run()
    b, _ = run()
    assert a.to_dict() == b.to_dict()
    c, _ = run(seed=7)
    assert [h["evaluated_windows"] for h in c.search["history"]] != [h["evaluated_windows"] for h in a.search["history"]]


@pytest.mark.parametrize("scorer", [IncrementalScorer, RacingScorer])
def test_never_worse_on_calibration_than_its_best_seed_and_the_steps_are_its_set(scorer):
    plan, view = run(scorer=scorer)
    best_seed = min(s["ppl"] for s in plan.search["seeds"])
    assert plan.steps[-1]["ppl"] <= best_seed
    assert plan.steps[-1]["ppl"] == pytest.approx(plan.search["parent_ppl"], rel=1e-6)
    assert plan.removed == plan.search["parent"]  # in execution order
    assert plan.steps[-1]["ratio"] <= 0.3
    assert "seconds_so_far" not in plan.search  # wall time stays out of the finished plan
    assert plan.search["evaluated_windows"] <= plan.search["exhaustive_windows"]
    assert len(plan.search["history"]) == GENERATIONS
    # each step's perplexity is its prefix's, exactly
    from blockprune.window_nll import perplexity
    _, w = setup(tiny_llama(5, layers=5))
    prefix = frozenset(b for u in plan.removed[:2] for b in expand(u))
    assert plan.steps[1]["ppl"] == pytest.approx(perplexity(view, w, prefix), rel=1e-5)


class Killed(Exception):
    pass


def test_killed_between_generations_it_resumes_to_the_same_plan(tmp_path):
    whole, _ = run()
    saves = []

    def kill_after_third(plan):
        saves.append(json.dumps(plan.to_dict()))
        if len(saves) == 3:
            plan.save(tmp_path / "plan.json")
            raise Killed

    with pytest.raises(Killed):
        run(checkpoint=kill_after_third)
    saved = Plan.load(tmp_path / "plan.json")
    assert len(saved.search["history"]) == 2 and not saved.steps  # seeds, then two generations
    resumed, _ = run(plan=saved)
    assert resumed.to_dict() == whole.to_dict()


def test_a_resume_may_change_the_number_of_generations_down_to_those_run(tmp_path):
    shorter, _ = run(generations=4)
    saves = []

    def kill_after_third(plan):
        saves.append(1)
        if len(saves) == 3:
            plan.save(tmp_path / "plan.json")
            raise Killed

    with pytest.raises(Killed):
        run(checkpoint=kill_after_third)  # a run of GENERATIONS, killed after its second
    saved = Plan.load(tmp_path / "plan.json")
    assert saved.search["generations"] == GENERATIONS
    resumed, _ = run(plan=saved, generations=4)
    assert resumed.to_dict() == shorter.to_dict()  # as if it had been started with 4
    options = PruneOptions(method="blockpruner-evo", ratio=0.3, generations=1)
    with pytest.raises(UserError, match="already run 2 generations: --generations must be at least 2"):
        SMALL.extend(Plan.load(tmp_path / "plan.json"), options)
    with pytest.raises(UserError, match="finished after 4 generations"):
        SMALL.extend(resumed, options)


def test_seed_runs_must_be_finished_runs_of_the_same_model_and_calibration(tmp_path):
    with pytest.raises(UserError, match="holds no plan.json"):
        PruneOptions(method="blockpruner-evo", ratio=0.2, seed_runs=(str(tmp_path),)).validate()
    with pytest.raises(UserError, match="--ratio instead of --num-blocks"):
        PruneOptions(method="blockpruner-evo", num_blocks=3).validate()
    assert "seed_runs" not in PruneOptions(method="blockpruner-evo", ratio=0.2, seed_runs=("x",)).recorded()
    assert "generations" not in PruneOptions(method="blockpruner-evo", ratio=0.2).recorded()  # the default
    with pytest.raises(UserError, match="--generations applies to"):
        PruneOptions(ratio=0.2, generations=3).check_all_used()


def test_prune_seeds_the_population_with_the_given_runs(tiny_checkpoint, calib_file, tmp_path, replaced):
    from blockprune import api
    from blockprune.methods import METHODS

    replaced(METHODS, dataclasses.replace(SMALL))
    common = dict(calibration=calib_file, seqlen=32, ratio=0.3, progress=False, export=False)
    api.prune(tiny_checkpoint, tmp_path / "lp", method="layer-ppl", **common)
    api.prune(tiny_checkpoint, tmp_path / "bp", method="blockpruner", **common)
    res = api.prune(tiny_checkpoint, tmp_path / "evo", method="blockpruner-evo", generations=GENERATIONS,
                    seed_runs=(str(tmp_path / "lp"), str(tmp_path / "bp")), **common)
    assert res.plan.options["generations"] == GENERATIONS
    seeds = res.plan.search["seeds"]
    assert [s["source"] for s in seeds] == ["layer-ppl", "blockpruner"]
    assert seeds[0]["removed"] == Plan.load(tmp_path / "lp").removed
    assert res.plan.steps[-1]["ppl"] <= min(s["ppl"] for s in seeds)
    assert str(tmp_path / "lp") not in (tmp_path / "evo" / "plan.json").read_text()  # the seeds by their sets, not paths
    timings = json.loads((tmp_path / "evo" / "timings.json").read_text())
    assert len(timings["steps"]) == 1 and timings["steps"][0]["seconds"] > 0
    # resuming: the generations are loose (a finished run refuses to be lengthened), the rest binds
    with pytest.raises(UserError, match="finished after 6 generations"):
        api.prune(tiny_checkpoint, tmp_path / "evo", method="blockpruner-evo", generations=GENERATIONS + 2,
                  resume=True, **common)
    with pytest.raises(UserError, match="cannot be resumed"):
        api.prune(tiny_checkpoint, tmp_path / "evo", method="blockpruner-evo", generations=GENERATIONS + 2,
                  resume=True, **{**common, "seqlen": 16})


def test_a_seed_run_of_other_calibration_is_refused_before_anything_is_written(tiny_checkpoint, calib_file, tmp_path):
    from blockprune import api

    other = tmp_path / "other.txt"
    other.write_text(" ".join(reversed(open(calib_file).read().split())))
    common = dict(seqlen=32, ratio=0.3, progress=False, export=False)
    api.prune(tiny_checkpoint, tmp_path / "lp", method="layer-ppl", calibration=str(other), **common)
    with pytest.raises(UserError, match="--seed-runs: .* another model or calibration set"):
        api.prune(tiny_checkpoint, tmp_path / "evo", method="blockpruner-evo", generations=2,
                  seed_runs=(str(tmp_path / "lp"),), calibration=calib_file, **common)
    assert not (tmp_path / "evo").exists()


def test_a_seed_set_of_whole_layers_that_no_offspring_beats_ends_as_its_blocks(tiny_checkpoint, calib_file, tmp_path):
    from blockprune import api

    common = dict(calibration=calib_file, seqlen=32, ratio=0.3, progress=False, export=False)
    seed = api.prune(tiny_checkpoint, tmp_path / "lp", method="layer-ppl", **common)
    res = api.prune(tiny_checkpoint, tmp_path / "evo", method="blockpruner-evo", generations=0,
                    seed_runs=(str(tmp_path / "lp"),), **common)
    assert res.plan.removed_blocks >= seed.plan.removed_blocks
    assert all(not u.startswith("layer.") for u in res.plan.removed)
