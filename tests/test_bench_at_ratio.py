"""bench/compare/at_ratio.py: a greedy plan cut back to a smaller ratio is what the run at that ratio made."""
from pathlib import Path

import pytest
from conftest import bench_script

from blockprune.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
R20 = ROOT / "bench" / "compare" / "smollm2-r20-paper"


def at_ratio():
    return bench_script("bench/compare/at_ratio.py")


def test_the_20_percent_layer_search_cut_to_10_percent_is_the_10_percent_run():
    """The committed 10% run was searched on its own: the cut must give its steps exactly."""
    run10 = Plan.load(ROOT / "bench" / "compare" / "smollm2-r10-paper" / "layer-ppl")
    cut = at_ratio().cut(Plan.load(R20 / "layer-ppl"), run10.options["ratio"])
    assert [(s["removed"], s["ppl"], s["ratio"]) for s in cut.steps] == \
        [(s["removed"], s["ppl"], s["ratio"]) for s in run10.steps]
    assert cut.status == "done" and cut.options["cut_from"]["ratio"] == 0.2


def test_a_cut_the_smaller_budget_could_have_changed_is_refused():
    mod = at_ratio()
    greedy = Plan.load(R20 / "blockpruner")  # MLP blocks among its candidates until its end
    with pytest.raises(SystemExit, match="might have chosen otherwise"):
        mod.cut(greedy, Plan.load(R20 / "layer-ppl").steps[-1]["ratio"])
    layers = Plan.load(R20 / "layer-ppl")
    with pytest.raises(SystemExit, match="would go on"):  # an eighth layer fits under 25%: not in the plan
        mod.cut(layers, 0.25)
    with pytest.raises(SystemExit, match="not a greedy search"):
        mod.cut(Plan.load(R20 / "blockpruner-evo"), 0.19)


def test_evaluation_parts_merge_only_when_made_with_the_comparisons_settings(tmp_path):
    import json

    mod = at_ratio()
    settings = {"seqlen": 2048, "max_windows": None, "limit": 300, "num_fewshot": 0}
    run = tmp_path / "run"
    for name, ppl, zs, s in (("eval-ppl", {"wikitext2": {"ppl": 9.0}}, {}, {"seqlen": 2048, "max_windows": None,
                                                                          "limit": None, "num_fewshot": 0}),
                             ("eval-zero-shot", {}, {"piqa": {"acc": 0.5}}, settings)):
        (run / name).mkdir(parents=True)
        (run / name / "eval.json").write_text(json.dumps({"settings": s, "perplexity": ppl, "zero_shot": zs}))
    merged = mod.evaluation(run, settings)  # the perplexity part's limit bears on none of its tasks
    assert set(merged["perplexity"]) == {"wikitext2"} and set(merged["zero_shot"]) == {"piqa"}
    (run / "eval-ppl" / "eval.json").write_text(json.dumps({"settings": {**settings, "seqlen": 128},
                                                            "perplexity": {"wikitext2": {}}, "zero_shot": {}}))
    with pytest.raises(SystemExit, match="not the comparison's"):
        mod.evaluation(run, settings)
