"""Baselines, ablations and the refined search: valid plans, exportable models, metrics by hand,
one-shot against iterative, refined never worse than greedy."""
import math

import pytest
import torch

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.export import export, load
from blockprune.methods import METHODS, Job, get
from blockprune.options import PruneOptions
from blockprune.scoring import make_scorer, true_ppl_steps
from blockprune.scoring.js import JSScorer, js_divergence
from blockprune.scoring.local import LocalScorer, block_influence, relative_magnitude, unit_stats
from blockprune.window_nll import perplexity
from blockprune.scoring import Scored
from blockprune.scoring.plain import PlainScorer
from blockprune.plan import Plan, expand
from conftest import tiny_llama


def setup(layers=4, n=4, t=20, seed=0):
    model = tiny_llama(seed, layers)
    from blockprune.view import BlockView
    view = BlockView(model)
    ids = torch.randint(1, 97, (n, t), generator=torch.Generator().manual_seed(seed))
    return model, view, Windows(ids, "random", n, n * t, None)


def empty_plan(method="x"):
    return Plan(method=method, model={}, calibration={}, options={})


def run(method, view, w, scorer=None, num_blocks=None, ratio=None, on_step=None, plan=None):
    plan = plan or empty_plan(method)
    job = Job(view, w, scorer or PlainScorer(view, w), "mix", num_blocks, ratio, on_step)
    return get(method).run(job, plan)


# -- metrics by hand -------------------------------------------------------------------------------
def test_block_influence_and_relative_magnitude_match_hand_computation():
    x_in = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    x_out = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    # cos = (12 + 12) / (5 * 5) = 0.96 ; second token orthogonal: cos 0
    assert block_influence(x_in, x_out).tolist() == pytest.approx([0.04, 1.0])
    # f = out - in = (1, -1) and (-1, 2): |f| / |out| = sqrt(2)/5 and sqrt(5)/2
    assert relative_magnitude(x_in, x_out).tolist() == pytest.approx([math.sqrt(2) / 5, math.sqrt(5) / 2])


def test_js_divergence_matches_hand_computation():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1e-30])
    m = (p + q) / 2
    kl = lambda a, b: sum(float(x) * math.log(float(x) / float(y)) for x, y in zip(a, b) if x > 0)
    expect = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    assert float(js_divergence(p.log(), q.log())) == pytest.approx(expect, rel=1e-6)
    assert float(js_divergence(p.log(), p.log())) == pytest.approx(0.0, abs=1e-12)


def test_layer_stats_equal_hidden_states_of_the_hf_forward():
    model, view, w = setup(layers=3)
    with torch.no_grad():
        hs = model(w.ids, output_hidden_states=True).hidden_states  # hs[i] enters layer i; the last is normed
    layers = [frozenset({f"attn.{i}", f"mlp.{i}"}) for i in range(2)]
    for metric, fn in (("bi", block_influence), ("rm", relative_magnitude)):
        got = unit_stats(view, w, layers, metric, batch_size=3)
        want = [float(fn(hs[i], hs[i + 1]).mean()) for i in range(2)]
        assert got == pytest.approx(want, rel=1e-5)


def test_block_stats_follow_the_masked_model():
    _, view, w = setup(layers=2)
    removed = frozenset({"attn.0"})
    prep = view.prepare(w.ids)
    x = view.run(prep.hidden, prep, removed, 0, 1)  # input of mlp.0 with attn.0 masked
    y = view.run(x, prep, removed, 1, 2)
    got = LocalScorer("bi", view, w).score(removed, [frozenset({"mlp.0"})]).scores[0]
    assert got == pytest.approx(float(block_influence(x, y).mean()), rel=1e-6)


# -- every method: valid plan, exportable model ------------------------------------------------------
DEPTH_METHODS = ["blockpruner", "blockpruner-oneshot", "blockpruner-refined", "layer-ppl", "shortgpt",
                 "relative-magnitude"]


def test_depth_methods_are_registered():
    assert set(DEPTH_METHODS) <= set(METHODS)


@pytest.mark.parametrize("method", DEPTH_METHODS)
def test_every_method_writes_a_valid_plan_and_an_exportable_model(method, tmp_path):
    model, view, w = setup(layers=6)
    ratio = 0.3
    plan = run(method, view, w, ratio=ratio)
    assert len(plan.steps) >= 2, "two layers fit under 30% of a 6-layer tiny model"
    layer_method = get(method).granularity == "layer"
    assert all(u.startswith("layer.") == layer_method for u in plan.removed)
    assert len(set(plan.removed)) == len(plan.removed)
    removed = set()
    for s in plan.steps:
        removed |= set(expand(s["removed"]))
        assert s["ratio"] == pytest.approx(view.removed_params(removed) / view.total_params)
        assert s["ppl"] == pytest.approx(perplexity(view, w, removed), rel=1e-6)
    assert plan.steps[-1]["ratio"] <= ratio
    # the largest removal not above the ratio: no unit left would still fit
    left = [b for b in view.blocks if b.name not in removed]
    unit = (lambda b: view.by_name[f"attn.{b.layer}"].params + view.by_name[f"mlp.{b.layer}"].params) \
        if layer_method else (lambda b: b.params)
    if method not in ("blockpruner-refined",):
        assert all(view.removed_params(removed) + unit(b) > ratio * view.total_params for b in left)
    export(model, plan.removed_blocks, tmp_path / "ck")
    pruned = load(tmp_path / "ck")
    with torch.no_grad():
        assert torch.allclose(pruned(w.ids).logits, view.logits(w.ids, plan.removed_blocks), atol=1e-4)


@pytest.mark.parametrize("metric", ["bi", "rm", "js"])
def test_metric_inside_the_iterative_search_records_metric_and_true_perplexity(metric):
    _, view, w = setup()
    scorer = make_scorer(view, w, PruneOptions(metric=metric, num_blocks=3))
    plan = empty_plan()
    job = Job(view, w, scorer, "mix", 3, None, true_ppl_steps(None, view, w, metric))
    get("blockpruner").run(job, plan)
    removed = set()
    for s in plan.steps:
        assert s["metric"] == metric and s["score"] == min(v for v in s["scores"].values())
        removed |= {s["removed"]}
        assert s["ppl"] == pytest.approx(perplexity(view, w, removed), rel=1e-9)
    # the first step ranks the dense model's blocks by the metric itself
    first = plan.steps[0]["scores"]
    if metric == "js":
        assert first["mlp.1"] == pytest.approx(JSScorer(view, w).score(frozenset(), [frozenset({"mlp.1"})]).scores[0])
    else:
        assert first["mlp.1"] == pytest.approx(unit_stats(view, w, [{"mlp.1"}], metric)[0])


def test_metric_option_is_validated_and_recorded():
    with pytest.raises(UserError, match="--metric"):
        PruneOptions(num_blocks=1, metric="cos").validate()
    assert PruneOptions(num_blocks=1, metric="bi").recorded()["metric"] == "bi"


def test_refined_refuses_a_non_perplexity_metric():
    _, view, w = setup(layers=2)
    with pytest.raises(UserError, match="perplexity"):
        run("blockpruner-refined", view, w, scorer=LocalScorer("bi", view, w), num_blocks=1)


# -- a constructed case: blocks whose removals interact ---------------------------------------------
class TableScorer:
    """Perplexity of a removal set from a table: per-block costs times pair interactions."""

    cost = {"attn.0": 1.0, "attn.1": 1.1, "attn.2": 1.2, "attn.3": 2.0}
    pairs = {frozenset({"attn.0", "attn.1"}): 3.0, frozenset({"attn.0", "attn.2"}): 1.5}

    def ppl(self, s):
        v = 10.0 * math.prod(self.cost[b] for b in s)
        return v * math.prod(f for p, f in self.pairs.items() if p <= s)

    def score(self, removed, candidates, progress=None):
        return Scored([self.ppl(removed | c) for c in candidates], len(candidates), len(candidates))


def table_job(view, w, num_blocks=2):
    return Job(view, w, TableScorer(), "mha", num_blocks, None)


def test_one_shot_and_iterative_differ_where_removals_interact():
    _, view, w = setup()
    oneshot = get("blockpruner-oneshot").run(table_job(view, w), empty_plan())
    iterative = get("blockpruner").run(table_job(view, w), empty_plan())
    assert oneshot.removed == ["attn.0", "attn.1"]  # the two cheapest alone, a bad pair
    assert iterative.removed == ["attn.0", "attn.2"]  # the second choice sees the first removal
    assert list(oneshot.steps[0]["scores"].values()) == [10.0, 11.0, 12.0, 20.0]


def test_refined_finds_the_swap_greedy_misses_and_records_its_cost():
    _, view, w = setup()
    plan = get("blockpruner-refined").run(table_job(view, w), empty_plan())
    assert plan.removed == ["attn.1", "attn.2"]  # swap attn.0 -> attn.1: 13.2 < greedy's 18
    ref = plan.steps[-1]["refine"]
    assert ref["greedy_ppl"] == pytest.approx(18.0) and ref["ppl"] == pytest.approx(13.2)
    assert ref["swaps"] == [{"out": "attn.0", "in": "attn.1", "ppl": pytest.approx(13.2)}]
    assert ref["evaluated_windows"] > 0
    assert plan.steps[0]["greedy_removed"] == "attn.0" and plan.steps[0]["ppl"] == pytest.approx(11.0)
    assert plan.steps[-1]["ppl"] == pytest.approx(13.2)


class RacingTableScorer(TableScorer):
    """Like a racing scorer at its worst: every candidate but the best stops early, with a partial score
    that looks better than the best's (partial-window perplexities can)."""

    def score(self, removed, candidates, progress=None):
        true = [self.ppl(removed | c) for c in candidates]
        best = min(range(len(true)), key=true.__getitem__)
        scores = [v if i == best else 0.5 * true[best] for i, v in enumerate(true)]
        return Scored(scores, len(candidates), 4 * len(candidates), [4 if i == best else 1 for i in range(len(true))])


def test_refined_accepts_only_complete_scores_from_a_racing_scorer():
    _, view, w = setup()
    job = Job(view, w, RacingTableScorer(), "mha", 2, None)
    plan = get("blockpruner-refined").run(job, empty_plan())
    table = TableScorer()
    prefix = set()
    for s in plan.steps:  # every recorded perplexity is the exact one of its removal prefix
        prefix.add(s["removed"])
        assert s["ppl"] == pytest.approx(table.ppl(frozenset(prefix)))
    assert plan.steps[-1]["refine"]["ppl"] <= plan.steps[-1]["refine"]["greedy_ppl"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_never_ends_above_greedy(seed):
    _, view, w = setup(seed=seed)
    greedy_plan = run("blockpruner", view, w, num_blocks=3)
    plan = run("blockpruner-refined", view, w, num_blocks=3)
    assert len(plan.removed) == 3
    assert plan.steps[-1]["refine"]["greedy_ppl"] == pytest.approx(greedy_plan.steps[-1]["ppl"])
    final = perplexity(view, w, plan.removed_blocks)
    assert final <= greedy_plan.steps[-1]["ppl"] * (1 + 1e-9)
    assert plan.steps[-1]["ppl"] == pytest.approx(final, rel=1e-9)
    # swaps never shrink what is removed
    assert view.removed_params(plan.removed_blocks) >= view.removed_params(greedy_plan.removed_blocks)


def test_one_shot_resumes_from_its_recorded_scores():
    _, view, w = setup()
    full = run("blockpruner-oneshot", view, w, num_blocks=3)
    part = run("blockpruner-oneshot", view, w, num_blocks=1)

    class Refuse:
        def score(self, *a, **k):
            raise AssertionError("a resumed one-shot run must not score again")
    resumed = run("blockpruner-oneshot", view, w, scorer=Refuse(), num_blocks=3, plan=part)
    assert resumed.removed == full.removed


@pytest.mark.parametrize("method", ["blockpruner-oneshot", "shortgpt"])
def test_a_single_pass_methods_scoring_time_counts_in_its_first_step(method, monkeypatch):
    """timings.json sums the steps' seconds: the pass that ranks every unit happens before the first."""
    from blockprune.methods import oneshot, shortgpt

    clock = {"t": 0.0}

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock["t"]

    class SlowScorer(TableScorer):
        def score(self, removed, candidates, progress=None):
            clock["t"] += 1000.0
            return super().score(removed, candidates, progress)

    real_stats = shortgpt.unit_stats

    def slow_stats(*a, **k):
        clock["t"] += 1000.0
        return real_stats(*a, **k)

    monkeypatch.setattr(oneshot, "time", FakeTime)
    monkeypatch.setattr(shortgpt, "time", FakeTime)
    monkeypatch.setattr(shortgpt, "unit_stats", slow_stats)
    _, view, w = setup()
    seconds = []
    job = Job(view, w, SlowScorer(), "mha", 2, None, on_step=lambda plan, s: seconds.append(s))
    get(method).run(job, empty_plan())
    assert seconds == [1000.0, 0.0]


# -- the scorer interface: --batch-size reaches every method, and only scoring methods build a scorer --
@pytest.mark.parametrize("method", ["shortgpt", "relative-magnitude", "blockpruner-oneshot"])
def test_batch_size_is_honoured_under_the_default_scorer(method, tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    import blockprune
    from blockprune.methods import oneshot, shortgpt

    used = []

    def spy(module, name, at):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            used.append(kwargs["batch_size"] if "batch_size" in kwargs else args[at])
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)
    spy(oneshot, "perplexity", 3)  # each removal's perplexity (every one-shot method)
    spy(shortgpt, "unit_stats", 5)  # ShortGPT's and Relative Magnitude's single pass
    blockprune.prune(tiny_checkpoint, tmp_path / "run", method=method, calibration=calib_file, seqlen=32,
                     nsamples=8, num_blocks=2, batch_size=4, progress=False, export=False)
    assert used and set(used) == {4}


@pytest.mark.parametrize("method", ["shortgpt", "relative-magnitude", "width-magnitude"])
def test_methods_that_do_not_score_build_no_scorer_cache(method, tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    import blockprune
    from blockprune.scoring.incremental import BoundaryCache

    built = []
    real = BoundaryCache.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        real(self, *args, **kwargs)
    monkeypatch.setattr(BoundaryCache, "__init__", counting)
    budget = {"ratio": 0.2} if method.startswith("width") else {"num_blocks": 1}
    blockprune.prune(tiny_checkpoint, tmp_path / "run", method=method, calibration=calib_file, seqlen=32,
                     nsamples=8, progress=False, export=False, **budget)
    assert built == []
    assert not get(method).uses_scorer


# -- a method and a metric added as docs/add-a-method.md and docs/add-a-metric.md say ------------------
def test_a_method_registered_at_runtime_is_picked_up_by_the_cli(tiny_checkpoint, calib_file, tmp_path):
    import sys

    from blockprune import cli
    from blockprune.methods import unregister
    from conftest import doc_module

    prune = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
             "--method", "deepest-first", "--num-blocks", "2", "--no-export", "--quiet"]
    assert cli.main([*prune, "--out", str(tmp_path / "before")]) == 2  # not a choice yet
    doc_module("add-a-method.md", "blockprune.methods.deepest_first")
    try:
        assert cli.main([*prune, "--out", str(tmp_path / "run")]) == 0
        plan = Plan.load(tmp_path / "run")
        assert plan.method == "deepest-first" and plan.removed == ["layer.2", "layer.1"]  # 4 layers: 3 stays
        assert plan.steps[0]["metric"] == "depth"
    finally:
        unregister("deepest-first")
        sys.modules.pop("blockprune.methods.deepest_first", None)
    assert "deepest-first" not in METHODS


def test_a_metric_registered_at_runtime_is_picked_up_by_the_cli(tiny_checkpoint, calib_file, tmp_path):
    import sys

    from blockprune import cli, models, scoring
    from blockprune.data import load_windows
    from blockprune.view import BlockView
    from conftest import doc_module

    prune = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
             "--metric", "update", "--num-blocks", "2", "--no-export", "--quiet"]
    assert cli.main([*prune, "--out", str(tmp_path / "before")]) == 2  # not a choice yet
    mod = doc_module("add-a-metric.md", "blockprune.scoring.update_norm")
    try:
        assert cli.main([*prune, "--out", str(tmp_path / "run")]) == 0
        plan = Plan.load(tmp_path / "run")
        net, tok = models.load(tiny_checkpoint, "fp32", "cpu")
        view = BlockView(net)
        w = load_windows(calib_file, tok, 32)
        first = plan.steps[0]
        assert first["metric"] == "update" and first["scores"]["mlp.1"] == pytest.approx(
            unit_stats(view, w, [{"mlp.1"}], mod.update_norm)[0])
        assert first["removed"] == min(first["scores"], key=first["scores"].get)
        assert first["ppl"] == pytest.approx(perplexity(view, w, expand(first["removed"])), rel=1e-6)
    finally:
        scoring.unregister("update")
        sys.modules.pop("blockprune.scoring.update_norm", None)
    assert "update" not in scoring.metrics()


def test_one_shot_ranks_by_complete_scores_never_by_a_race(tiny_checkpoint, calib_file, tmp_path):
    """Racing leaves clear losers with scores from a few windows; a one-shot ranking would order its later
    removals by them. So racing (from compare, or auto) becomes incremental for it, and asked for, is refused."""
    import blockprune
    from blockprune import cli

    racing = PruneOptions(method="blockpruner-oneshot", num_blocks=3, scorer="racing", calibration=calib_file,
                          seqlen=32, validation="none")
    assert racing.resolved("cpu").scorer == "incremental"
    assert PruneOptions(method="blockpruner", num_blocks=3, scorer="racing").resolved("cpu").scorer == "racing"
    ran = blockprune.prune(tiny_checkpoint, tmp_path / "racing", options=racing, export=False, progress=False)
    exact = blockprune.prune(tiny_checkpoint, tmp_path / "exact", method="blockpruner-oneshot", num_blocks=3,
                             scorer="incremental", calibration=calib_file, seqlen=32, validation="none",
                             export=False, progress=False)
    assert ran.plan.options["scorer"] == "incremental" and ran.plan.to_dict() == exact.plan.to_dict()
    assert cli.main(["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                     "--method", "blockpruner-oneshot", "--num-blocks", "3", "--scorer", "racing",
                     "--out", str(tmp_path / "cli")]) == 2
    assert not (tmp_path / "cli").exists()
