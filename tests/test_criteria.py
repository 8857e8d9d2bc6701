"""The per-parameter criterion and the joint (layer + block) search: constructed cases where they must
choose differently from BlockPruner's greedy, and racing that decides like exhaustive scoring under them."""
import math

import pytest
import torch

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.options import PruneOptions
from blockprune.plan import Plan
from blockprune.scoring.base import Scored
from blockprune.scoring.incremental import IncrementalScorer
from blockprune.scoring.plain import PlainScorer
from blockprune.scoring.racing import RacingScorer
from blockprune.search import candidate_units, criteria, greedy
from blockprune.view import BlockView
from conftest import tiny_llama


def setup(model, n=6, t=24, seed=0):
    view = BlockView(model)
    ids = torch.randint(1, 97, (n, t), generator=torch.Generator().manual_seed(seed))
    return view, Windows(ids, "random", n, n * t, None)


def plan_with_dense(view, w):
    from blockprune.window_nll import perplexity
    return Plan(method="blockpruner", model={}, calibration={}, options={}, dense={"ppl": perplexity(view, w)})


class TableScorer:
    """A scorer that answers from a table of perplexities by removal set (a constructed case)."""

    name, batch_size = "table", 1

    def __init__(self, table):
        self.table, self.asked = table, []

    def score(self, removed, candidates, progress=None, sizes=None):
        self.asked.append(sizes)
        return Scored([self.table[removed | c] for c in candidates], len(candidates), len(candidates))


def test_per_param_prefers_the_cheaper_rise_per_parameter_where_ppl_prefers_the_smaller_rise():
    view, _ = setup(tiny_llama(0, layers=2))
    attn, mlp = view.by_name["attn.0"].params, view.by_name["mlp.0"].params
    assert mlp > attn  # 4608 against 3072 in the tiny config
    dense = 10.0
    # attn.0 raises log-ppl by 0.010, mlp.0 by 0.012: ppl picks attn.0; per parameter mlp.0 is cheaper
    table = {frozenset({"attn.0"}): dense * math.exp(0.010), frozenset({"mlp.0"}): dense * math.exp(0.012),
             frozenset({"attn.1"}): dense * 2, frozenset({"mlp.1"}): dense * 2}
    cands = candidate_units(view)
    plans = {}
    for crit in ("ppl", "per-param"):
        plan = Plan(method="blockpruner", model={}, calibration={}, options={}, dense={"ppl": dense})
        scorer = TableScorer(table)
        plans[crit] = greedy(view, scorer, plan, cands, num_blocks=1, ratio=None, criterion=crit)
        assert scorer.asked == [None if crit == "ppl" else [u.params for u in cands]]
    assert plans["ppl"].removed == ["attn.0"] and plans["per-param"].removed == ["mlp.0"]
    step = plans["per-param"].steps[0]
    assert step["ppl"] == table[frozenset({"mlp.0"})]
    assert step["criterion_value"] == pytest.approx(0.012 * 1e6 / mlp)
    assert "criterion_value" not in plans["ppl"].steps[0]


def silent_layer_model(layer=1):
    """A tiny Llama whose layer `layer` adds nothing to the residual stream (both blocks' outputs zeroed)."""
    model = tiny_llama(0, layers=4)
    with torch.no_grad():
        model.model.layers[layer].self_attn.o_proj.weight.zero_()
        model.model.layers[layer].mlp.down_proj.weight.zero_()
    return model


def test_joint_candidates_take_a_whole_layer_where_block_search_takes_one_block():
    view, _ = setup(tiny_llama(0, layers=4))
    joint = candidate_units(view, "joint")
    assert [u.name for u in joint[:3]] == ["layer.0", "attn.0", "mlp.0"] and len(joint) == 4 + 8
    dense = 10.0
    table = {u.blocks: dense * math.e for u in joint}  # every other unit: a rise of 1 nat
    # layer.1's two blocks together cost more than either alone, less per parameter than each
    table.update({frozenset({"attn.1"}): dense * math.exp(0.010), frozenset({"mlp.1"}): dense * math.exp(0.012),
                  frozenset({"attn.1", "mlp.1"}): dense * math.exp(0.015)})
    runs = {}
    for name, cands, crit in (("joint", joint, "per-param"), ("blocks", candidate_units(view), "ppl"),
                              ("blocks per-param", candidate_units(view), "per-param")):
        plan = Plan(method="blockpruner", model={}, calibration={}, options={}, dense={"ppl": dense})
        runs[name] = greedy(view, TableScorer(table), plan, cands, num_blocks=1, ratio=None, criterion=crit).removed
    assert runs == {"joint": ["layer.1"], "blocks": ["attn.1"], "blocks per-param": ["mlp.1"]}


def test_a_silent_layer_costs_nothing_to_remove_and_the_joint_search_scores_it_so():
    view, w = setup(silent_layer_model(1))
    s = IncrementalScorer(view, w).score(frozenset(), [frozenset({"attn.1", "mlp.1"})])
    assert s.scores[0] == pytest.approx(plan_with_dense(view, w).dense["ppl"], rel=1e-6)


def test_joint_search_never_offers_a_layer_whose_block_is_gone():
    view, w = setup(tiny_llama(1, layers=3))
    plan = greedy(view, IncrementalScorer(view, w), plan_with_dense(view, w), candidate_units(view, "joint"),
                  num_blocks=None, ratio=0.35, criterion="per-param")
    removed = set()
    for step in plan.steps:
        for name in step["scores"]:
            blocks = {name} if not name.startswith("layer.") else {f"attn.{name[6:]}", f"mlp.{name[6:]}"}
            assert not blocks & removed, (name, removed)
        unit = step["removed"]
        removed |= {unit} if not unit.startswith("layer.") else {f"attn.{unit[6:]}", f"mlp.{unit[6:]}"}
    assert plan.steps[-1]["ratio"] <= 0.35


@pytest.mark.parametrize("scorer", [IncrementalScorer, PlainScorer])
def test_every_step_removes_the_per_param_argmin_of_its_scores(scorer):
    view, w = setup(tiny_llama(2, layers=4))
    plan = greedy(view, scorer(view, w), plan_with_dense(view, w), candidate_units(view, "joint"), num_blocks=None,
                  ratio=0.4, criterion="per-param")
    by = {u.name: u for u in candidate_units(view, "joint")}
    base = plan.dense["ppl"]
    for step in plan.steps:
        best = min(step["scores"], key=lambda n: (criteria.value("per-param", step["scores"][n], base, by[n].params),
                                                  by[n].index, -len(by[n].blocks)))
        assert step["removed"] == best
        base = step["ppl"]


def loud_layer_model():
    """A tiny Llama with one loud, useless layer (layer 1's outputs scaled up 20x): removing it is clearly best."""
    model = tiny_llama(2, layers=3)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(20)
        model.model.layers[1].self_attn.o_proj.weight.mul_(20)
    return model


def test_racing_on_the_per_param_criterion_finds_the_clear_winner_with_fewer_windows():
    view, w = setup(loud_layer_model(), n=16)
    exact = greedy(view, IncrementalScorer(view, w), plan_with_dense(view, w), candidate_units(view, "joint"),
                   num_blocks=1, ratio=None, criterion="per-param")
    raced = greedy(view, RacingScorer(view, w, batch_size=2, z=2.5), plan_with_dense(view, w), candidate_units(view, "joint"),
                   num_blocks=1, ratio=None, criterion="per-param")
    assert raced.removed == exact.removed and exact.removed[0] in ("mlp.1", "layer.1")  # the loud units
    assert raced.steps[0]["ppl"] == pytest.approx(exact.steps[0]["ppl"], rel=1e-5)
    assert raced.steps[0]["evaluated_windows"] < raced.steps[0]["exhaustive_windows"]


def test_racing_on_sizes_drops_a_candidate_by_its_rise_per_parameter():
    """The silent layer's rise is zero; every other candidate's is positive: with sizes the race keeps the
    layer to the end and the chosen score is complete and exact."""
    view, w = setup(silent_layer_model(2), n=12)
    cands = candidate_units(view, "joint")
    s = RacingScorer(view, w, z=2.5).score(frozenset(), [u.blocks for u in cands], sizes=[u.params for u in cands])
    i = [u.name for u in cands].index("layer.2")
    assert s.complete(i)
    exact = IncrementalScorer(view, w).score(frozenset(), [cands[i].blocks])
    assert s.scores[i] == pytest.approx(exact.scores[0], rel=1e-6)


def test_options_refuse_what_the_joint_search_and_criteria_cannot_do():
    with pytest.raises(UserError, match="--ratio instead of --num-blocks"):
        PruneOptions(method="blockpruner-joint", num_blocks=3).validate()
    with pytest.raises(UserError, match="drop --block-type"):
        PruneOptions(method="blockpruner-joint", ratio=0.2, block_type="mha").validate()
    with pytest.raises(UserError, match="--criterion must be one of"):
        PruneOptions(ratio=0.2, criterion="size").validate()
    with pytest.raises(UserError, match="cannot rank by --metric bi"):
        PruneOptions(ratio=0.2, criterion="per-param", metric="bi").validate()
    with pytest.raises(UserError, match="--criterion applies to"):
        PruneOptions(method="layer-ppl", ratio=0.2, criterion="per-param").check_all_used()
    # perplexity stays the default and is not recorded, so plans made before the option stay byte-identical
    assert "criterion" not in PruneOptions(ratio=0.2).recorded()
    assert PruneOptions(ratio=0.2, criterion="per-param").recorded()["criterion"] == "per-param"


def test_compare_names_a_criterion_like_a_metric():
    from blockprune.compare import parse_methods

    e = parse_methods("blockpruner:per-param,blockpruner-joint")
    assert (e[0].method, e[0].metric, e[0].criterion, e[0].folder) == ("blockpruner", "ppl", "per-param",
                                                                      "blockpruner-per-param")
    assert (e[1].method, e[1].criterion) == ("blockpruner-joint", "ppl")
    with pytest.raises(UserError, match="takes no criterion"):
        parse_methods("layer-ppl:per-param")
