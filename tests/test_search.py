"""Greedy search order, ratio accounting, and the equality of every scorer with plain evaluation."""
import math

import pytest
import torch

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.scoring.incremental import BoundaryCache, IncrementalScorer
from blockprune.window_nll import perplexity
from blockprune.scoring.plain import PlainScorer
from blockprune.plan import Plan
from blockprune.scoring.racing import RacingScorer, noise_floor, race, survivors
from blockprune.search import candidate_units, greedy
from blockprune.view import BlockView
from conftest import tiny_llama


def setup(layers=4, n=6, t=24, seed=0):
    model = tiny_llama(seed, layers)
    view = BlockView(model)
    ids = torch.randint(1, 97, (n, t), generator=torch.Generator().manual_seed(seed))
    return view, Windows(ids, "random", n, n * t, None)


def empty_plan():
    return Plan(method="blockpruner", model={}, calibration={}, options={})


def test_each_step_removes_the_argmin_of_its_recorded_scores_and_scores_are_true_perplexities():
    view, w = setup()
    plan = greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view), num_blocks=3, ratio=None)
    removed = set()
    for step in plan.steps:
        best = min(step["scores"].items(), key=lambda kv: (kv[1], view.by_name[kv[0]].index))
        assert step["removed"] == best[0]
        assert step["ppl"] == step["scores"][step["removed"]]
        assert step["removed"] not in removed and set(step["scores"]).isdisjoint(removed)
        # a recorded score is the calibration perplexity with that block masked too
        some = sorted(step["scores"])[0]
        assert step["scores"][some] == pytest.approx(perplexity(view, w, removed | {some}), rel=1e-9)
        removed.add(step["removed"])
    assert len(plan.steps) == 3 and [len(s["scores"]) for s in plan.steps] == [8, 7, 6]


@pytest.mark.parametrize("block_type,kinds", [("mha", {"attn"}), ("mlp", {"mlp"}), ("mix", {"attn", "mlp"})])
def test_block_type_restricts_candidates(block_type, kinds):
    view, w = setup(layers=3, n=2)
    plan = greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view, "block", block_type), num_blocks=2, ratio=None)
    assert {n.split(".")[0] for s in plan.steps for n in s["scores"]} == kinds


def test_ratio_counts_all_parameters_and_stops_before_exceeding_it():
    view, w = setup(layers=4, n=2)
    total = view.total_params
    assert total == sum(p.numel() for p in view.model.parameters())
    plan = greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view), num_blocks=None, ratio=0.3)
    removed = sum(view.by_name[s["removed"]].params for s in plan.steps)
    assert plan.steps[-1]["ratio"] == pytest.approx(removed / total)
    assert removed <= 0.3 * total
    smallest_left = min(b.params for b in view.blocks if b.name not in plan.removed)
    assert removed + smallest_left > 0.3 * total  # nothing else would have fit


def test_more_blocks_than_candidates_is_refused():
    view, w = setup(layers=2, n=1)
    with pytest.raises(UserError, match="more than the 2 candidate"):
        greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view, "block", "mha"), num_blocks=3, ratio=None)


def test_ties_go_to_the_earlier_block():
    view, w = setup(layers=2, n=1)

    class Flat:
        def score(self, removed, candidates, progress=None):
            from blockprune.scoring import Scored
            return Scored([5.0] * len(candidates), len(candidates), len(candidates))

    plan = greedy(view, Flat(), empty_plan(), candidate_units(view), num_blocks=2, ratio=None)
    assert plan.removed == ["attn.0", "mlp.0"]


def test_nan_candidates_are_ranked_last_and_reported():
    view, w = setup(layers=2, n=1)

    class NaNFirst:
        def score(self, removed, candidates, progress=None):
            from blockprune.scoring import Scored
            return Scored([math.nan] + [3.0 + i for i in range(len(candidates) - 1)], 1, 1)

    plan = greedy(view, NaNFirst(), empty_plan(), candidate_units(view), num_blocks=1, ratio=None)
    assert plan.removed == ["mlp.0"] and plan.steps[0]["faults"] == ["attn.0"]
    assert plan.steps[0]["scores"]["attn.0"] is None


@pytest.mark.parametrize("make", [
    lambda v, w: IncrementalScorer(v, w, batch_size=2),
    lambda v, w: IncrementalScorer(v, w, batch_size=4, every=3),
    lambda v, w: IncrementalScorer(v, w, batch_size=1, every=2, device="cpu"),
], ids=["every-boundary", "every-3rd", "every-2nd"])
def test_incremental_scores_and_selections_equal_plain(make):
    view, w = setup(layers=4, n=4)
    plain = greedy(view, PlainScorer(view, w, 2), empty_plan(), candidate_units(view), num_blocks=4, ratio=None)
    fast = greedy(view, make(view, w), empty_plan(), candidate_units(view), num_blocks=4, ratio=None)
    assert fast.removed == plain.removed
    for a, b in zip(plain.steps, fast.steps):
        for k in a["scores"]:
            assert b["scores"][k] == pytest.approx(a["scores"][k], rel=1e-5)


@pytest.mark.parametrize("scorer_class,every,batch_size", [(IncrementalScorer, 1, 4), (IncrementalScorer, 3, 4),
                                                          (IncrementalScorer, 1, 1), (RacingScorer, 1, 1)])
def test_after_a_step_the_cache_is_the_chosen_candidates_own_run(scorer_class, every, batch_size):
    view, w = setup(layers=4, n=4)
    scorer = scorer_class(view, w, batch_size=batch_size, every=every)
    plan = greedy(view, scorer, empty_plan(), candidate_units(view), num_blocks=1, ratio=None)
    removed = frozenset(plan.removed_blocks)
    full_refresh = BoundaryCache(view, w, batch_size, every)
    full_refresh.sync(frozenset())
    refresh_cost = full_refresh.sync(removed)
    cost = scorer.cache.sync(removed)
    assert refresh_cost > 0 and cost < refresh_cost
    if batch_size == len(w):  # one batch: its leader is the chosen candidate, so nothing runs again
        assert cost == 0
    fresh = BoundaryCache(view, w, batch_size, every)
    fresh.sync(removed)
    for kept, new in zip(scorer.cache.states, fresh.states):
        assert kept.keys() == new.keys()
        for k in kept:
            assert torch.equal(kept[k], new[k]), k


def test_layer_granularity_removes_whole_layers():
    view, w = setup(layers=3, n=2)
    plain = greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view, "layer"), num_blocks=2, ratio=None)
    fast = greedy(view, IncrementalScorer(view, w), empty_plan(), candidate_units(view, "layer"), num_blocks=2, ratio=None)
    assert plain.removed == fast.removed and all(n.startswith("layer.") for n in plain.removed)
    assert len(plain.removed_blocks) == 4


def clear_winner_model():
    """A model with one loud, useless block (mlp.1 scaled up 20x): removing it is clearly best."""
    model = tiny_llama(2, layers=3)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(20)
    return model


def clear_winner_race():
    """The clear-winner model's view and 16 random windows of 24 tokens."""
    view = BlockView(clear_winner_model())
    ids = torch.randint(1, 97, (16, 24), generator=torch.Generator().manual_seed(4))
    return view, Windows(ids, "random", 16, 16 * 24, None)


def test_racing_finds_the_clear_winner_with_fewer_windows():
    view, w = clear_winner_race()
    plain = PlainScorer(view, w, 2).score(frozenset(), [u.blocks for u in candidate_units(view)])
    race = RacingScorer(view, w, batch_size=2, z=2.0).score(frozenset(), [u.blocks for u in candidate_units(view)])
    best = min(range(6), key=plain.scores.__getitem__)
    assert candidate_units(view)[best].name == "mlp.1"
    assert race.complete(best) and race.scores[best] == pytest.approx(plain.scores[best], rel=1e-5)
    assert race.evaluated_windows < plain.evaluated_windows
    plan = greedy(view, RacingScorer(view, w, batch_size=2, z=2.0), empty_plan(), candidate_units(view), num_blocks=1, ratio=None)
    assert plan.removed == ["mlp.1"] and plan.steps[0]["evaluated_windows"] < plan.steps[0]["exhaustive_windows"]
    assert plan.steps[0]["partial"]  # the losers that left early are named with their window counts


def test_racing_with_one_window_batches_leaves_clear_losers_after_one_look():
    view, w = clear_winner_race()
    plain = PlainScorer(view, w, 1).score(frozenset(), [u.blocks for u in candidate_units(view)])
    race_ = RacingScorer(view, w, batch_size=1, floor_from=3).score(frozenset(), [u.blocks for u in candidate_units(view)])
    best = min(range(6), key=plain.scores.__getitem__)
    assert race_.complete(best) and race_.scores[best] == pytest.approx(plain.scores[best], rel=1e-5)
    assert min(race_.windows) < 16 and race_.evaluated_windows < plain.evaluated_windows


def test_noise_floor_is_the_rms_spread_of_the_best_candidates_against_their_leader():
    nll = {0: torch.tensor([1.0, 2.0]), 1: torch.tensor([1.5, 2.1]), 2: torch.tensor([1.0, 2.6]), 3: torch.tensor([9.0, 9.0])}
    # leader of {0, 1, 2} is 0 (mean 1.5); differences: 1 -> [0.5, 0.1] (var 0.08), 2 -> [0, 0.6] (var 0.18)
    assert noise_floor(nll, [0, 1, 2]) == pytest.approx(math.sqrt((0.08 + 0.18) / 2))


def test_survivors_by_hand():
    nll = {0: torch.tensor([1.0, 1.1, 0.9]), 1: torch.tensor([1.2, 1.3, 1.1]), 2: torch.tensor([1.0, 1.4, 0.7])}
    # after 3 of 10 windows: fpc = sqrt(7 / 9); candidate 1 trails by 0.2 every window (spread 0): it leaves
    # unless a floor widens its bound; candidate 2 trails by 0.033 with spread 0.351: it stays
    assert survivors(nll, [0, 1, 2], 3, 10, z=3.0) == [0, 2]
    se = 0.2 / (3.0 * math.sqrt(7 / 9)) * math.sqrt(3)  # the floor at which candidate 1's bound touches 0
    assert survivors(nll, [0, 1, 2], 3, 10, z=3.0, floor=se * 1.01) == [0, 1, 2]
    assert survivors(nll, [0, 1, 2], 3, 10, z=3.0, floor=se * 0.99) == [0, 2]
    # one window: without a floor nobody can leave; with one, a trail of more than z floors leaves
    assert survivors(nll, [0, 1, 2], 1, 10, z=3.0) == [0, 1, 2]
    assert survivors(nll, [0, 1, 2], 1, 10, z=3.0, floor=0.06) == [0, 2]
    assert survivors(nll, [0, 1, 2], 10, 10, z=3.0) == [0, 1, 2]  # every window seen: nothing left to save


def test_race_runs_the_best_on_a_second_window_for_the_floor_and_survivors_on_every_window():
    scores = torch.tensor([[0.0, 0.1, -0.1, 0.05], [0.02, 0.0, -0.05, 0.0], [3.0, 3.1, 2.9, 3.0]])
    looks = []

    def look(c, b):
        looks.append((c, b))
        return scores[c, b:b + 1]

    nll = race(3, [1, 1, 1, 1], look, z=3.0, floor_from=2)
    assert {c for c, b in looks if b == 1} >= {0, 1}  # the two best on window 0 give the floor
    assert [nll[c].numel() for c in range(3)] == [4, 4, 1]  # the loud loser left after its first window
    assert torch.equal(nll[0], scores[0]) and torch.equal(nll[1], scores[1])


def test_blocks_an_earlier_pruning_removed_are_no_candidates(tmp_path):
    from blockprune.export import export, load

    model = tiny_llama(layers=3)
    export(model, {"attn.1", "mlp.2"}, tmp_path / "once")
    view = BlockView(load(tmp_path / "once"))
    names = [u.name for u in candidate_units(view)]
    assert "attn.1" not in names and "mlp.2" not in names and len(names) == 4
    assert [u.name for u in candidate_units(view, "layer")] == ["layer.0", "layer.1", "layer.2"]  # each keeps a block
    ids = torch.randint(1, 97, (2, 16), generator=torch.Generator().manual_seed(0))
    w = Windows(ids, "random", 2, 32, None)
    plan = greedy(view, PlainScorer(view, w), empty_plan(), candidate_units(view), num_blocks=2, ratio=None)
    assert not {"attn.1", "mlp.2"} & set(plan.removed)
