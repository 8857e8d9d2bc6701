"""bench/plans/check.py holds on any CPU: removals compared exactly, perplexities within a stated tolerance."""
import copy
import json
from pathlib import Path

import pytest
from conftest import bench_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check():
    return bench_script("bench/plans/check.py")


def test_a_plan_recomputed_on_another_cpu_passes_within_the_tolerance_and_only_with_the_same_removals(check):
    old = json.loads((ROOT / "bench/plans/demo/plan.json").read_text())
    new = copy.deepcopy(old)
    assert check.same_outcome(new, old)[0]
    new["steps"][-1]["ppl"] *= 1 + check.PPL_RTOL / 10  # last-bit differences, as between two CPUs
    assert check.same_outcome(new, old)[0]
    new["dense"]["ppl"] *= 1 + check.PPL_RTOL * 10
    assert not check.same_outcome(new, old)[0]
    moved = copy.deepcopy(old)
    moved["steps"][0]["removed"], moved["steps"][1]["removed"] = old["steps"][1]["removed"], old["steps"][0]["removed"]
    assert check.same_outcome(moved, old) == (False, "different removals")


def test_every_search_speed_record_agrees_within_the_tolerance(check):
    """The machines' exhaustive runs are the reference speed/* checks use: they must agree with each other."""
    plain = [json.loads(p.read_text())["modes"]["plain"] for p in (ROOT / "bench/search_speed/results").glob("*.json")]
    assert len(plain) >= 2
    assert all(p["removed"] == plain[0]["removed"] and check.close(p["ppl"], plain[0]["ppl"]) for p in plain)


def test_a_rerun_names_the_fields_that_keep_it_from_being_byte_identical(check, monkeypatch):
    """A re-run whose outcome holds but whose bytes differ says which fields differ (a library's version
    here), so a reader can tell a moved version from a moved result; identical bytes say so."""
    recorded = ROOT / "bench/plans/demo/plan.json"
    plan = json.loads(recorded.read_text())

    def fake_prune(plan_to_write):
        def prune(model, out, **kwargs):
            out.mkdir(parents=True)
            (out / "plan.json").write_bytes(plan_to_write)
        return prune

    same = check.recorded_as_now(plan, check.options_of(plan))
    monkeypatch.setattr(check, "prune", fake_prune(same))
    assert check.rerun("demo", recorded) == (True, f"{len(same)} bytes identical (batch size 1)")

    moved = json.loads(same)
    moved["versions"]["transformers"] = "0.0.0"
    monkeypatch.setattr(check, "prune", fake_prune(check.dumps_json(moved).encode()))
    ok, what = check.rerun("demo", recorded)
    assert ok and what.endswith("not byte-identical: differs in versions (batch size 1)")

    moved["steps"][0]["removed"] = "attn.29"
    monkeypatch.setattr(check, "prune", fake_prune(check.dumps_json(moved).encode()))
    ok, what = check.rerun("demo", recorded)
    assert not ok and "different removals" in what
