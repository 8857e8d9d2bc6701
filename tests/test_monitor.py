"""The overfitting monitor: held-out validation rows, its values in the plan, summary and report, resume,
and every method that takes steps."""
import json
import math

import pytest

import blockprune
from blockprune import cli, models, monitor
from blockprune.data import heldout_rows, heldout_windows, load_rows, load_windows, sample_indices, windows_from_rows
from blockprune.errors import UserError
from blockprune.methods import METHODS
from blockprune.window_nll import perplexity
from blockprune.plan import Plan, expand
from blockprune.view import BlockView
from conftest import CharTokenizer, crash_after_saves

OPTS = dict(num_blocks=3, nsamples=8, seqlen=32, export=False, progress=False)


@pytest.fixture
def data(shared_data, monkeypatch):
    monkeypatch.setenv("BLOCKPRUNE_DATA", str(shared_data))
    return shared_data


@pytest.mark.parametrize("nsamples", [4, 64, 256, 4990])
def test_validation_rows_never_overlap_the_calibration_rows(data, nsamples):
    rows = load_rows("alpaca", data)
    calibration = [rows[i] for i in sample_indices(len(rows), nsamples, 42)]
    val = heldout_rows(rows, nsamples, 128, 42)
    assert not set(val) & set(calibration)
    left = sum(1 for r in rows if r not in set(calibration))  # the rows a validation set could take
    assert len(val) == min(128, left) and (left >= 128 or nsamples == 4990)
    # the calibration sample is the one load_windows takes (the same rows, hence the same tokens)
    tok = CharTokenizer()
    assert load_windows("alpaca", tok, 32, nsamples=nsamples, seed=42, data_dir_=data).sha256() == \
        windows_from_rows(calibration, tok, 32, "alpaca").sha256()


def test_a_row_text_repeated_in_the_source_stays_out_of_validation():
    rows = [f"row {i}" for i in range(50)]
    taken = sample_indices(len(rows), 10, 42)
    rows.append(rows[taken[0]])  # a second copy the calibration sample did not take
    taken = sample_indices(len(rows), 10, 42)
    calibration = {rows[i] for i in taken}
    val = heldout_rows(rows, 10, 100, 42)
    assert not set(val) & calibration and len(val) == len(set(rows)) - len(calibration)


def test_the_validation_set_barely_moves_with_the_calibration_size(data):
    rows = load_rows("alpaca", data)
    sets = [set(heldout_rows(rows, n, 128, 42)) for n in (4, 16, 64, 256)]
    assert all(len(a & sets[0]) >= 128 - 16 for a in sets)  # only rows a larger sample takes are replaced


def _check_values(plan: Plan, ckpt: str, data) -> None:
    """Every recorded validation perplexity is that of the step's removal set on the held-out windows."""
    net, tok = models.load(ckpt)
    view = BlockView(net)
    o = plan.options
    val = heldout_windows(o["calibration"], tok, o["seqlen"], calibration_nsamples=o["nsamples"],
                          nsamples=o["validation_nsamples"], seed=o["seed"], data_dir_=data)
    assert val.sha256() == plan.validation["sha256"]
    assert plan.dense["validation_ppl"] == pytest.approx(perplexity(view, val), rel=1e-6)
    removed = set()
    for s in plan.steps:
        removed |= set(expand(s["removed"]))
        assert s["validation_ppl"] == pytest.approx(perplexity(view, val, frozenset(removed)), rel=1e-6), s["step"]


STEP_METHODS = sorted(m for m in METHODS if METHODS[m].granularity != "width")


@pytest.mark.parametrize("method,metric", [(m, "ppl") for m in STEP_METHODS] + [("blockpruner", "bi")])
def test_the_monitor_works_with_every_method_that_takes_steps(tiny_checkpoint, data, tmp_path, method, metric):
    num = 2 if METHODS[method].granularity == "layer" else 3
    # searches over sets of mixed sizes take a parameter budget, not a count
    budget = {"blockpruner-joint": dict(ratio=0.3), "blockpruner-evo": dict(ratio=0.3, generations=2)}.get(method)
    res = blockprune.prune(tiny_checkpoint, tmp_path / "run", method=method, metric=metric,
                           **{**OPTS, **({"num_blocks": None, **budget} if budget else {"num_blocks": num})})
    plan = Plan.load(tmp_path / "run")
    assert plan.options["validation"] == "heldout" and plan.options["validation_nsamples"] == 8
    assert len(plan.steps) == num or (budget and plan.steps)
    _check_values(plan, tiny_checkpoint, data)
    assert res.summary["validation"]["pruned_ppl"] == plan.steps[-1]["validation_ppl"]
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert timings["validation_seconds"] > 0 and 0 < timings["validation_share"] < 1
    assert all("validation_seconds" in s for s in timings["steps"])


def _mislead_greedy(monkeypatch):
    """Greedy's first step ranks upside down (it removes the worst unit), so refinement swaps it out."""
    from blockprune.methods import refined
    from blockprune.scoring import Scored

    real_greedy = refined.greedy

    class Misled:
        def __init__(self, scorer):
            self.scorer, self.calls = scorer, 0

        def score(self, removed, candidates, progress=None):
            s = self.scorer.score(removed, candidates, progress)
            self.calls += 1
            return Scored([1 / v for v in s.scores], s.evaluated_windows, s.exhaustive_windows) if self.calls == 1 else s

    monkeypatch.setattr(refined, "greedy", lambda view, scorer, *a, **k: real_greedy(view, Misled(scorer), *a, **k))


def test_refined_swaps_get_the_validation_of_their_new_removal_sets(tiny_checkpoint, data, tmp_path, monkeypatch):
    _mislead_greedy(monkeypatch)
    # attention blocks only: all the same size, so any removed one may be swapped for any kept one
    blockprune.prune(tiny_checkpoint, tmp_path / "run", method="blockpruner-refined", block_type="mha", **OPTS)
    plan = Plan.load(tmp_path / "run")
    refine = plan.steps[-1]["refine"]
    assert refine["swaps"] and plan.steps[0].get("greedy_removed")
    assert refine["greedy_validation_ppl"] != plan.steps[-1]["validation_ppl"]
    _check_values(plan, tiny_checkpoint, data)


def test_a_resumed_run_with_the_monitor_gives_the_byte_identical_plan(tiny_checkpoint, data, tmp_path, monkeypatch):
    blockprune.prune(tiny_checkpoint, tmp_path / "whole", **OPTS)
    restore = crash_after_saves(monkeypatch, 3)  # dense ppl, step 1, step 2: then the process "dies"
    with pytest.raises(KeyboardInterrupt):
        blockprune.prune(tiny_checkpoint, tmp_path / "killed", **OPTS)
    restore()
    partial = Plan.load(tmp_path / "killed")
    assert len(partial.steps) == 2 and all("validation_ppl" in s for s in partial.steps)
    blockprune.prune(tiny_checkpoint, tmp_path / "killed", resume=True, **OPTS)
    whole = (tmp_path / "whole" / "plan.json").read_bytes()
    assert b"validation_ppl" in whole
    assert (tmp_path / "killed" / "plan.json").read_bytes() == whole


def test_refinement_killed_after_a_swap_resumes_to_the_byte_identical_plan(tiny_checkpoint, data, tmp_path,
                                                                           monkeypatch):
    _mislead_greedy(monkeypatch)
    opts = dict(OPTS, method="blockpruner-refined", block_type="mha")
    blockprune.prune(tiny_checkpoint, tmp_path / "whole", **opts)
    whole = Plan.load(tmp_path / "whole")
    assert whole.steps[-1]["refine"]["swaps"]
    # saves: the dense model, 3 greedy steps, then the refinement's first accepted swap
    restore = crash_after_saves(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        blockprune.prune(tiny_checkpoint, tmp_path / "killed", **opts)
    restore()
    partial = Plan.load(tmp_path / "killed")
    progress = partial.steps[-1]["refine_progress"]
    assert progress["swaps"] == whole.steps[-1]["refine"]["swaps"][:1] and "refine" not in partial.steps[-1]
    blockprune.prune(tiny_checkpoint, tmp_path / "killed", resume=True, **opts)
    assert (tmp_path / "killed" / "plan.json").read_bytes() == (tmp_path / "whole" / "plan.json").read_bytes()
    timings = json.loads((tmp_path / "killed" / "timings.json").read_text())
    assert timings["steps"][-1]["seconds"] >= progress["seconds"]  # the killed part's time is kept


@pytest.mark.parametrize("other", [dict(validation="none"), dict(validation_nsamples=9)])
def test_resume_refuses_other_validation(tiny_checkpoint, data, tmp_path, other):
    blockprune.prune(tiny_checkpoint, tmp_path / "run", **OPTS)
    with pytest.raises(UserError, match="different options"):
        blockprune.prune(tiny_checkpoint, tmp_path / "run", resume=True, **{**OPTS, **other})


def test_validation_none_leaves_the_plan_as_without_a_monitor(tiny_checkpoint, data, tmp_path, calib_file):
    blockprune.prune(tiny_checkpoint, tmp_path / "off", validation="none", **OPTS)
    blockprune.prune(tiny_checkpoint, tmp_path / "txt", calibration=calib_file, **OPTS)  # auto: Alpaca only
    for run in ("off", "txt"):
        d = json.loads((tmp_path / run / "plan.json").read_text())
        assert "validation" not in d and "validation" not in d["options"]
        assert "validation_ppl" not in d["dense"] and not any("validation_ppl" in s for s in d["steps"])


def test_another_source_validates_on_its_first_rows(tiny_checkpoint, data, tmp_path):
    res = blockprune.prune(tiny_checkpoint, tmp_path / "run", validation="wikitext2", validation_nsamples=40, **OPTS)
    plan = Plan.load(tmp_path / "run")
    assert plan.options["validation"] == "wikitext2" and plan.validation["rows"] == 40
    assert all(math.isfinite(s["validation_ppl"]) for s in plan.steps)
    assert res.summary["validation"]["source"]["source"] == "wikitext2"


@pytest.mark.parametrize("extra,message", [
    (["--calibration", "wikitext2", "--validation", "wikitext2"], "no rows to hold out"),
    (["--validation-nsamples", "0"], "--validation-nsamples must be at least 1"),
    (["--validation-nsamples", "5000"], "fewer than --validation-nsamples 5000"),
    (["--method", "llm-bip", "--validation", "wikitext2"], "--validation applies to methods that remove blocks"),
    (["--validation", "none", "--validation-nsamples", "16"], "--validation-nsamples does nothing without a monitor"),
    (["--validation", "no-such-file.json"], "--validation: dataset 'no-such-file.json' is neither"),
])
def test_bad_validation_is_one_line_exit_2_and_writes_nothing(tiny_checkpoint, data, tmp_path, capsys, extra, message):
    stop = ["--ratio", "0.2"] if "llm-bip" in extra else ["--num-blocks", "2"]
    rc = cli.main(["prune", "--model", tiny_checkpoint, "--nsamples", "8", "--seqlen", "32", *stop,
                   "--out", str(tmp_path / "run"), "--quiet", "--no-export", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_the_summary_and_the_report_show_the_monitor_and_its_warning(tiny_checkpoint, data, tmp_path, capsys,
                                                                   monkeypatch):
    from blockprune.report import build

    rc = cli.main(["prune", "--model", tiny_checkpoint, "--nsamples", "8", "--seqlen", "32", "--num-blocks", "3",
                   "--out", str(tmp_path / "run"), "--quiet", "--no-export"])
    out, err = capsys.readouterr()
    plan = Plan.load(tmp_path / "run")
    assert rc == 0 and "validation perplexity" in out and "alpaca (held out)" in out
    assert f"{plan.steps[-1]['validation_ppl']:.4f}" in out
    ratio = monitor.check(plan)["log_ratio"]
    assert ("warning: validation perplexity rose" in err) == (ratio > monitor.OVERFIT_RATIO)
    text = build([tmp_path / "run"], tmp_path / "report").read_text()
    assert "validation perplexity" in text and f"{plan.steps[-1]['validation_ppl']:.3f}" in text
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["runs"][0]["path_validation_ppl"][-1] == plan.steps[-1]["validation_ppl"]
    # a threshold the run exceeds: the warning reaches stderr and the report
    monkeypatch.setattr(monitor, "OVERFIT_RATIO", ratio - 1)
    rc = cli.main(["prune", "--model", tiny_checkpoint, "--nsamples", "8", "--seqlen", "32", "--num-blocks", "3",
                   "--out", str(tmp_path / "run"), "--quiet", "--no-export", "--resume"])
    err = capsys.readouterr().err
    assert rc == 0 and "blockprune: warning: validation perplexity rose" in err
    assert "validation perplexity rose" in build([tmp_path / "run"], tmp_path / "report2").read_text()


def test_overfit_ratio_rule():
    assert monitor.overfit_ratio(10, 20, 10, 20) == pytest.approx(1.0)
    assert monitor.overfit_ratio(10, 20, 10, 80) == pytest.approx(3.0)
    # calibration barely moved: the floor keeps a 1% validation rise from looking like overfitting
    assert monitor.overfit_ratio(10, 10.01, 10, 10.1) < 0.25
    assert monitor.overfit_ratio(10, 20, None, 80) is None
