"""bench/compare/at_ratio.py: a greedy plan cut back to a smaller ratio is what the run at that ratio made."""
import importlib.util
from pathlib import Path

import pytest

from blockprune.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
R20 = ROOT / "bench" / "compare" / "smollm2-r20-paper"


def at_ratio():
    spec = importlib.util.spec_from_file_location("at_ratio", ROOT / "bench" / "compare" / "at_ratio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_20_percent_layer_search_cut_to_10_percent_is_the_10_percent_run():
    """The committed 10% run was searched on its own: the cut must give its steps exactly."""
    run10 = Plan.load(ROOT / "bench" / "compare" / "smollm2-r10-paper" / "layer-ppl")
    cut = at_ratio().cut(Plan.load(R20 / "layer-ppl"), run10.options["ratio"])
    assert [(s["removed"], s["ppl"], s["ratio"]) for s in cut.steps] == \
        [(s["removed"], s["ppl"], s["ratio"]) for s in run10.steps]
    assert cut.status == "done" and cut.options["cut_from"] == 0.2


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
