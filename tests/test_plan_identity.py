"""What a plan records binds its resume: all that sets the result (batch size included), nothing a method
does not use; a resume may change scorer where both select what exhaustive scoring selects (issue 34)."""
import json

import pytest

import blockprune
from blockprune import scoring
from blockprune.errors import UserError
from blockprune.methods import METHODS
from blockprune.options import PruneOptions, resume_check, scorer_fields
from blockprune.plan import Plan
from conftest import crash_after_saves

KW = dict(nsamples=8, seqlen=32, export=False, progress=False)


def test_batch_size_is_recorded_only_when_changed():
    assert "batch_size" not in PruneOptions(num_blocks=2).recorded()  # plans made before it stay byte-identical
    assert PruneOptions(num_blocks=2, batch_size=4).recorded()["batch_size"] == 4


@pytest.mark.parametrize("method", sorted(METHODS))
def test_scorer_fields_are_recorded_only_where_a_scorer_ranks_by_perplexity(method):
    recorded = PruneOptions(method=method, ratio=0.2, scorer="racing").resolved("cpu").recorded()
    assert ("scorer" in recorded) == METHODS[method].uses_scorer
    assert METHODS[method].uses_scorer or not set(scorer_fields()) & set(recorded)
    if METHODS[method].ranks_by_metric:  # ranked by a metric: its own scorer, not --scorer's
        assert not set(scorer_fields()) & set(PruneOptions(method=method, ratio=0.2, metric="bi").recorded())


def _killed(ckpt, calib, out, monkeypatch, saves=3, **kw):
    """A run "killed" right after its `saves`-th save (dense perplexity, then one per step)."""
    restore = crash_after_saves(monkeypatch, saves)
    with pytest.raises(KeyboardInterrupt):
        blockprune.prune(ckpt, out, calibration=calib, **KW, **kw)
    restore()
    assert Plan.load(out).status == "running"


def test_a_resume_with_another_batch_size_is_refused(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    _killed(tiny_checkpoint, calib_file, tmp_path / "run", monkeypatch, num_blocks=3)
    before = (tmp_path / "run" / "plan.json").read_bytes()
    with pytest.raises(UserError, match=r"different options: --batch-size 1 \(now 2\); it cannot be resumed"):
        blockprune.prune(tiny_checkpoint, tmp_path / "run", calibration=calib_file, num_blocks=3, batch_size=2,
                         resume=True, **KW)
    assert (tmp_path / "run" / "plan.json").read_bytes() == before


@pytest.mark.parametrize("method,start", [("blockpruner", {}), ("layer-ppl", {}), ("shortgpt", {}),
                                          ("blockpruner", {"scorer": "fast", "fast_dtype": "bf16"})],
                         ids=["blockpruner", "layer-ppl", "shortgpt", "blockpruner-from-fast"])
def test_a_run_started_with_the_default_scorer_resumes_with_racing_to_the_same_removals(
        method, start, tiny_checkpoint, calib_file, tmp_path, monkeypatch, capsys):
    """--scorer racing stands in for a machine without bf16, where `auto` resolves to another scorer."""
    # options given whole, as compare gives them: the CLI refuses --scorer for a method that uses none
    opts = PruneOptions(method=method, num_blocks=3, calibration=calib_file, nsamples=8, seqlen=32, **start)
    reference = blockprune.prune(tiny_checkpoint, tmp_path / "reference", options=opts, export=False, progress=False)
    _killed(tiny_checkpoint, calib_file, tmp_path / "run", monkeypatch, options=opts)
    saved = json.loads((tmp_path / "run" / "plan.json").read_text())
    capsys.readouterr()
    racing = PruneOptions(**{**opts.__dict__, "scorer": "racing", "fast_dtype": "auto"})
    res = blockprune.prune(tiny_checkpoint, tmp_path / "run", options=racing, resume=True, export=False, progress=True)
    assert res.plan.removed == reference.plan.removed
    assert res.plan.options == saved["options"]  # the record says how the run started; each step, how it ran
    err = capsys.readouterr().err
    if METHODS[method].uses_scorer:
        fast = saved["options"].get("fast_dtype")
        scorer = saved["options"]["scorer"] + (f" ({fast})" if fast else "")
        assert f"scored by --scorer {scorer} and continues with racing" in err
        assert "decisions are the same by construction" in err
    else:
        assert "scorer" not in saved["options"] and "continues with" not in err


def test_an_older_plan_that_recorded_an_unused_scorer_resumes_as_it_was_saved(
        tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    """ShortGPT plans made before issue 34 say `scorer: fast, fast_dtype: bf16` (a bf16 CPU's auto): they
    resume on any CPU, and their record is left as it was."""
    kw = dict(method="shortgpt", num_blocks=3, calibration=calib_file, **KW)
    reference = blockprune.prune(tiny_checkpoint, tmp_path / "reference", **kw)
    _killed(tiny_checkpoint, calib_file, tmp_path / "run", monkeypatch, method="shortgpt", num_blocks=3)
    path = tmp_path / "run" / "plan.json"
    plan = json.loads(path.read_text())
    plan["options"].update(scorer="fast", fast_dtype="bf16", racing_z=2.5)
    path.write_text(json.dumps(plan))
    res = blockprune.prune(tiny_checkpoint, tmp_path / "run", resume=True, **kw)
    assert res.plan.removed == reference.plan.removed
    assert json.loads(path.read_text())["options"] == plan["options"]


def test_a_scorer_that_may_select_otherwise_is_refused_on_resume(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    plain = scoring.get("plain")
    scoring.register(scoring.ScorerEntry("sloppy", plain.build, "a test scorer that does not promise exhaustive selections"))
    try:
        _killed(tiny_checkpoint, calib_file, tmp_path / "run", monkeypatch, num_blocks=3, scorer="racing")
        before = (tmp_path / "run" / "plan.json").read_bytes()
        with pytest.raises(UserError, match="scored by --scorer racing and would continue with sloppy; sloppy may "
                                            "select other units.*resume with --scorer racing"):
            blockprune.prune(tiny_checkpoint, tmp_path / "run", calibration=calib_file, num_blocks=3,
                             scorer="sloppy", resume=True, **KW)
        assert (tmp_path / "run" / "plan.json").read_bytes() == before
    finally:
        scoring.unregister("sloppy")


def test_racing_z_still_binds_between_two_racing_scorers():
    plan = Plan("blockpruner", {}, {}, PruneOptions(num_blocks=2, scorer="fast", fast_dtype="bf16",
                                                   racing_z=3.0).resolved("cpu").recorded())
    given = PruneOptions(num_blocks=2, scorer="racing").resolved("cpu").recorded()
    loose, note = resume_check(plan, given, METHODS["blockpruner"])
    assert "scorer" in loose and "racing_z" not in loose
    assert "fast (bf16) and racing within --racing-z 3.0" in note  # the saved tolerance: the identity check refuses 2.5


def test_a_finished_plan_that_records_no_batch_size_is_reused_with_any():
    """Plans made before batch size was recorded do not say theirs (bench/compare's quick protocol ran at 8);
    a finished one scores nothing more. A running one, or one that records its batch size, binds it."""
    given = PruneOptions(num_blocks=2, batch_size=8, scorer="incremental").recorded()
    plan = Plan("blockpruner", {}, {}, PruneOptions(num_blocks=2, scorer="incremental").recorded(), status="done")
    assert "batch_size" in resume_check(plan, given, METHODS["blockpruner"])[0]
    plan.status = "running"
    assert "batch_size" not in resume_check(plan, given, METHODS["blockpruner"])[0]


def test_fast_without_a_fast_precision_on_another_machine_is_a_scorer_switch():
    """--scorer fast on a CPU without native bf16 races in full precision only (fast_dtype none)."""
    plan = Plan("blockpruner", {}, {}, PruneOptions(num_blocks=2, scorer="fast", fast_dtype="bf16").recorded())
    given = PruneOptions(num_blocks=2, scorer="fast", fast_dtype="none").recorded()
    loose, note = resume_check(plan, given, METHODS["blockpruner"])
    assert "fast_dtype" in loose and "racing_z" not in loose
    assert "scored by --scorer fast (bf16) and continues with fast (racing, no fast precision)" in note
