"""`blockprune compare`: matched ratios, one folder per method, resumable, Table-1-shaped output."""
import json

import pytest

from blockprune import compare as cmp
from blockprune.api import PruneOptions
from blockprune.errors import UserError
from blockprune.evaluate import QUICK_DOCS, QUICK_WINDOWS, resumable
from blockprune.evaluate.resumable import make_evaluator
from blockprune.plan import Plan

TASKS = ("wikitext2",) + cmp.ZERO_SHOT
METHODS = "blockpruner,blockpruner-refined,shortgpt,relative-magnitude,blockpruner:bi"


class FakeEvaluator:
    """Stands in for lm-eval: records what it was asked, returns fixed scores."""

    def __init__(self):
        self.calls = []

    def __call__(self, target, tasks, out):
        self.calls.append((target, tuple(tasks)))
        return {"perplexity": {t: {"ppl": 10.0 + len(self.calls)} for t in tasks if t == "wikitext2"},
                "zero_shot": {t: {"acc": 0.25} if t == "winogrande" else {"acc": 0.25, "acc_norm": 0.5}
                              for t in tasks if t in cmp.ZERO_SHOT},
                "settings": {"tasks": list(tasks)}, "machines": [{"measured": list(tasks), "call": len(self.calls)}]}


@pytest.fixture
def calib(tmp_path):
    """Calibration text for six 32-byte windows: small enough that every search here takes seconds."""
    p = tmp_path / "calib.txt"
    p.write_text(("the cat sat on the mat and the model pruned a block of attention " * 3)[:200])
    return str(p)


def run_compare(model, out, calib, evaluator, methods=METHODS, ratio=0.3, scorer="plain"):
    opts = PruneOptions(calibration=calib, nsamples=8, seqlen=32, scorer=scorer)
    return cmp.compare(model, out, ratio=ratio, methods=methods, options=opts, tasks=TASKS, evaluator=evaluator,
                       eval_settings={"limit": 3}, progress=False)


def test_method_names_parse_with_metrics_and_bad_ones_are_refused():
    entries = cmp.parse_methods("blockpruner, shortgpt,blockpruner:js")
    assert [(e.method, e.metric, e.folder) for e in entries] == [
        ("blockpruner", "ppl", "blockpruner"), ("shortgpt", "ppl", "shortgpt"), ("blockpruner", "js", "blockpruner-js")]
    for bad, msg in (("nope", "unknown method"), ("blockpruner:cos", "unknown metric"), ("shortgpt,shortgpt", "twice"),
                     ("", "empty")):
        with pytest.raises(UserError, match=msg):
            cmp.parse_methods(bad)


def test_compare_matches_ratios_keeps_folders_and_resumes(tiny_checkpoint, calib, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    ev = FakeEvaluator()
    result = run_compare(tiny_checkpoint, out, calib, ev)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["dense", *METHODS.split(",")]
    for name, r in rows.items():
        assert r["ratio"] <= 0.3
        if name != "dense":
            plan = Plan.load(out / name.replace(":", "-"))
            assert plan.status == "done" and plan.removed == r["removed"] and r["ratio"] > 0
            assert (out / name.replace(":", "-") / "eval.json").exists()
    assert all(u.startswith("layer.") for u in rows["shortgpt"]["removed"])
    # refined started from greedy's plan and is never worse on calibration perplexity
    assert rows["blockpruner-refined"]["warm_start"] == "blockpruner"
    assert rows["blockpruner-refined"]["calibration_ppl"] <= rows["blockpruner"]["calibration_ppl"]
    assert rows["blockpruner-refined"]["refine"]["greedy_ppl"] == pytest.approx(rows["blockpruner"]["calibration_ppl"])
    assert rows["dense"]["calibration_ppl"] == Plan.load(out / "shortgpt").dense["ppl"]
    # identical removal sets are evaluated once
    sets = {frozenset(Plan.load(out / e.folder).removed_blocks) for e in cmp.parse_methods(METHODS)}
    assert len(ev.calls) == 1 + len(sets)
    assert rows["dense"]["average"] == pytest.approx((0.5 * 4 + 0.25) / 5)  # acc_norm where reported, acc for winogrande
    md = (out / "comparison.md").read_text()
    assert "| Method | Ratio | Calib. PPL | WikiText-2 PPL | PIQA | WinoGrande | HellaSwag | ARC-e | ARC-c | Avg. |" in md
    assert json.loads((out / "comparison.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))

    # a second run redoes nothing: no search, no evaluation
    def refuse(*a, **k):
        raise AssertionError("finished work was redone")
    monkeypatch.setattr(cmp, "prune", refuse)
    again = run_compare(tiny_checkpoint, out, calib, refuse)
    assert again["rows"] == result["rows"]


def test_compare_evaluates_only_missing_tasks_and_resumes_an_interrupted_search(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt")
    rec = json.loads((out / "shortgpt" / "eval.json").read_text())
    del rec["zero_shot"]["piqa"]
    (out / "shortgpt" / "eval.json").write_text(json.dumps(rec))
    # an interrupted search: a plan with its first step only, no compare record
    plan = Plan.load(out / "shortgpt")
    plan.steps, plan.status = plan.steps[:1], "running"
    plan.save(out / "shortgpt" / "plan.json")
    (out / "shortgpt" / "compare.json").unlink()
    ev = FakeEvaluator()
    result = run_compare(tiny_checkpoint, out, calib, ev, methods="shortgpt")
    assert ev.calls == [(str(out / "shortgpt"), ("piqa",))]
    assert Plan.load(out / "shortgpt").status == "done" and len(result["rows"][1]["removed"]) >= 1
    assert result["rows"][1]["zero_shot"]["piqa"] == 0.5


def test_a_resumed_search_keeps_the_time_its_killed_part_took(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt")
    sub = out / "shortgpt"
    plan = Plan.load(sub)
    plan.steps, plan.status = plan.steps[:1], "running"
    plan.save(sub / "plan.json")
    (sub / "compare.json").unlink()  # killed before its record was written
    (sub / "timings.json").write_text(json.dumps({"steps": [{"step": 1, "seconds": 1000.0}],
                                                  "validation_seconds": 200.0}))
    result = run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt")
    seconds = json.loads((sub / "compare.json").read_text())["search_seconds"]
    assert 1200.0 < seconds < 1300.0 and result["rows"][1]["search_seconds"] == seconds


def test_a_resumed_refinement_keeps_greedys_time_and_its_accepted_swaps(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="blockpruner")
    greedy_seconds = json.loads((out / "blockpruner" / "compare.json").read_text())["search_seconds"]
    sub = out / "blockpruner-refined"
    # what a refinement killed after its first accepted swap leaves: greedy's plan with the swap saved,
    # and the record written when the folder was seeded from greedy's
    plan = Plan.load(out / "blockpruner")
    plan.method, plan.status = "blockpruner-refined", "running"
    plan.options = {**plan.options, "method": "blockpruner-refined"}
    plan.steps[-1]["refine_progress"] = {"order": plan.removed, "ppl": plan.steps[-1]["ppl"], "swaps": [],
                                         "evaluated_windows": 0, "exhaustive_windows": 0, "seconds": 5000.0}
    sub.mkdir()
    plan.save(sub / "plan.json")
    (sub / "compare.json").write_text(json.dumps({"warm_start": "blockpruner", "search_seconds": greedy_seconds}))
    result = run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="blockpruner,blockpruner-refined")
    record = json.loads((sub / "compare.json").read_text())
    assert record["warm_start"] == "blockpruner"
    assert greedy_seconds + 5000.0 < record["search_seconds"] < greedy_seconds + 5100.0
    assert result["rows"][2]["search_seconds"] == record["search_seconds"]


def test_changed_evaluation_settings_reevaluate(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt")
    ev = FakeEvaluator()
    opts = PruneOptions(calibration=calib, nsamples=8, seqlen=32, scorer="plain")
    cmp.compare(tiny_checkpoint, out, ratio=0.3, methods="shortgpt", options=opts, tasks=TASKS, evaluator=ev,
                eval_settings={"limit": 5}, progress=False)
    assert len(ev.calls) == 2 and all(tasks == TASKS for _, tasks in ev.calls)


def test_compare_with_the_evaluation_pipeline(tiny_checkpoint, calib, tmp_path, shared_data):
    pytest.importorskip("blockprune.evaluate")
    evaluator, settings = make_evaluator(seqlen=32, max_windows=2, limit=None, data_dir=shared_data, progress=False)
    opts = PruneOptions(calibration=calib, nsamples=8, seqlen=32, scorer="plain")
    result = cmp.compare(tiny_checkpoint, tmp_path / "cmp", ratio=0.3, methods="shortgpt", options=opts,
                         tasks=("wikitext2",), evaluator=evaluator, eval_settings=settings, progress=False)
    dense, pruned = result["rows"]
    assert dense["perplexity"]["wikitext2"] > 1 and pruned["perplexity"]["wikitext2"] > 1
    assert dense["perplexity"]["wikitext2"] != pruned["perplexity"]["wikitext2"]
    assert "Avg." not in (tmp_path / "cmp" / "comparison.md").read_text()  # no zero-shot tasks, no average


def test_an_interrupted_evaluation_keeps_the_tasks_it_finished(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    part = out / "dense" / ".eval-part"
    part.mkdir(parents=True)
    (part / "eval.json").write_text(json.dumps({"perplexity": {"wikitext2": {"ppl": 5.0}},
                                                "zero_shot": {"piqa": {"acc": 0.1, "acc_norm": 0.2}},
                                                "settings": {"limit": 3},
                                                "machines": [{"measured": ["wikitext2", "piqa"], "call": 0}]}))
    ev = FakeEvaluator()
    result = run_compare(tiny_checkpoint, out, calib, ev, methods="shortgpt")
    assert ev.calls[0] == (tiny_checkpoint, ("winogrande", "hellaswag", "arc_easy", "arc_challenge"))
    dense = result["rows"][0]
    assert dense["perplexity"]["wikitext2"] == 5.0 and dense["zero_shot"]["piqa"] == 0.2
    assert dense["average"] == pytest.approx((0.2 + 0.25 + 0.5 * 3) / 5) and not part.exists()
    # each part's machine is kept with what it measured (the parts may have run on different CPUs)
    assert json.loads((out / "dense" / "eval.json").read_text())["machines"] == [
        {"measured": ["wikitext2", "piqa"], "call": 0},
        {"measured": ["winogrande", "hellaswag", "arc_easy", "arc_challenge"], "call": 1}]


def test_a_finished_folder_made_with_other_options_is_refused_not_reused(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt", ratio=0.3)
    before = (out / "shortgpt" / "plan.json").read_bytes()
    with pytest.raises(UserError, match="different ratio.*choose another --out"):
        run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="shortgpt", ratio=0.5)
    assert (out / "shortgpt" / "plan.json").read_bytes() == before  # left as it was


def test_parts_run_side_by_side_share_one_dense_evaluation(tiny_checkpoint, calib, tmp_path, monkeypatch):
    """The dense model is evaluated after a part's first search, so a second part whose first search ends
    later (here: the second call) finds it done, as bench/compare's two lanes rely on."""
    out = tmp_path / "cmp"
    order = []
    real = cmp.run_method
    monkeypatch.setattr(cmp, "run_method", lambda e, *a, **k: (order.append(e.label), real(e, *a, **k))[1])
    first = FakeEvaluator()
    run_compare(tiny_checkpoint, out, calib, lambda t, tasks, o: (order.append("eval " + t), first(t, tasks, o))[1],
                methods="shortgpt")
    assert order[:2] == ["shortgpt", "eval " + tiny_checkpoint]  # searched first, then the dense model
    second = FakeEvaluator()
    result = run_compare(tiny_checkpoint, out, calib, second, methods="relative-magnitude")
    # the dense model was not evaluated again; relative-magnitude was, unless it removed what shortgpt did
    # (then it shares shortgpt's evaluation, finished in the first call)
    same = Plan.load(out / "relative-magnitude").outcome.key == Plan.load(out / "shortgpt").outcome.key
    assert [t for t, _ in second.calls] == ([] if same else [str(out / "relative-magnitude")])
    assert json.loads((out / "relative-magnitude" / "eval.json").read_text()).get("same_removal_as") == \
        ("shortgpt" if same else None)
    # the other part's finished row stays in the table
    assert [r["method"] for r in result["rows"]] == ["dense", "shortgpt", "relative-magnitude"]


def test_an_interrupted_evaluation_resumes_without_the_search(tmp_path):
    """`evaluate_folder` on its own (evaluate/resumable.py): a part killed midway under the recorded settings
    (bench/compare's paper protocol) is merged, and only what it lacks is evaluated."""
    settings = {"seqlen": 2048, "max_windows": None, "limit": 300, "num_fewshot": 0}
    sub = tmp_path / "layer-ppl"
    (sub / resumable.PART).mkdir(parents=True)
    (sub / resumable.PART / "eval.json").write_text(json.dumps(
        {"perplexity": {"wikitext2": {"ppl": 5.0}}, "zero_shot": {}, "settings": {**settings, "batch_size": 16},
         "machines": [{"measured": ["wikitext2"], "call": 0}]}))
    ev = FakeEvaluator()
    record = resumable.evaluate_folder("m", sub, TASKS, ev, settings, {}, None)
    assert ev.calls == [("m", cmp.ZERO_SHOT)] and record["perplexity"]["wikitext2"] == {"ppl": 5.0}
    assert not resumable.missing_tasks(record, TASKS, settings) and not (sub / resumable.PART).exists()
    again = FakeEvaluator()
    assert resumable.evaluate_folder("m", sub, TASKS, again, settings, {}, None) == record and again.calls == []
    assert resumable.missing_tasks(record, TASKS, {**settings, "limit": 100}) == list(TASKS)  # other settings: all


def test_bench_compare_flags_still_match_its_committed_evaluations(monkeypatch, tmp_path):
    """bench/compare/run.sh's paper protocol (`--max-windows 0 --limit 300`) binds the settings its finished
    evaluations (and a part killed midway, in .eval-part) were recorded with, so a rerun evaluates none of
    them again."""
    from pathlib import Path

    from blockprune import cli

    seen = {}

    class Stop(Exception):
        pass

    def stop(**kw):
        seen.update(make_evaluator(**kw)[1])
        raise Stop
    monkeypatch.setattr(resumable, "make_evaluator", stop)
    with pytest.raises(Stop):
        cli.main(["compare", "--ratio", "0.2", "--tasks", "wikitext2", "--out", str(tmp_path / "c"),
                  "--max-windows", "0", "--limit", "300"])
    bench = Path(__file__).parents[1] / "bench" / "compare" / "smollm2-r20-paper"
    records = [json.loads(p.read_text()) for pattern in ("*/eval.json", "*/.eval-part/eval.json")
               for p in sorted(bench.glob(pattern))]
    assert records and all(resumable.matches(r, seen) for r in records), seen


W, D = QUICK_WINDOWS, QUICK_DOCS  # the standard quick subset
ALL = (None, None)  # every window, every document


@pytest.mark.parametrize("command", ["eval", "compare"])
@pytest.mark.parametrize("given, in_eval, in_compare", [
    ([], ALL, (W, D)), (["--quick"], (W, D), (W, D)), (["--full"], ALL, ALL),
    (["--max-windows", "5"], (5, None), (5, D)), (["--max-windows", "0"], ALL, (None, D)),
    (["--limit", "20"], (None, 20), (W, 20)), (["--limit", "0"], ALL, (W, None)),
    (["--max-windows", "0", "--limit", "300"], (None, 300), (None, 300))])
def test_eval_and_compare_read_the_subset_options_alike(command, given, in_eval, in_compare, monkeypatch, tmp_path):
    """One meaning of --quick, --full, --max-windows and --limit in both commands (0: all of them); only the
    default differs: eval the full test sets, compare the quick subset."""
    import blockprune.evaluate
    from blockprune import cli

    seen = {}

    class Stop(Exception):
        pass

    def stop(*a, **kw):
        seen.update(kw)
        raise Stop  # the subset is all this test needs
    monkeypatch.setattr(resumable, "make_evaluator", stop)
    monkeypatch.setattr(blockprune.evaluate, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(blockprune.evaluate, "load_subject", lambda *a, **k: None)
    monkeypatch.setattr(blockprune.evaluate, "evaluate", stop)
    ratio = ["--ratio", "0.2"] if command == "compare" else []
    with pytest.raises(Stop):
        cli.main([command, "--tasks", "wikitext2", "--out", str(tmp_path / "o"), *ratio, *given])
    assert (seen["max_windows"], seen["limit"]) == (in_eval if command == "eval" else in_compare)


@pytest.mark.parametrize("given, named", [
    (["--quick", "--full"], "--quick and --full"), (["--full", "--max-windows", "5"], "--full sets"),
    (["--quick", "--limit", "20"], "--quick sets"), (["--max-windows", "-1"], "--max-windows must be at least 0"),
    (["--limit", "-2"], "--limit must be at least 0"), (["--num-fewshot", "-1"], "--num-fewshot must be at least 0")])
def test_eval_and_compare_refuse_the_same_options_with_the_same_line(given, named, tmp_path, capsys, monkeypatch):
    """Checked once (commands.read_evaluation) before anything loads or is written, the same line from both."""
    import blockprune.evaluate
    from blockprune import cli

    monkeypatch.setattr(blockprune.evaluate, "prepare", lambda *a, **k: pytest.fail("went on to the tasks"))
    lines = []
    for command in ("eval", "compare"):
        extra = ["--ratio", "0.2"] if command == "compare" else []
        assert cli.main([command, "--out", str(tmp_path / command), *extra, *given]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0], err
        lines.append(err[0])
        assert not (tmp_path / command).exists()
    assert lines[0] == lines[1]


def test_compare_with_racing_runs_one_shot_exactly_and_reuses_its_folder(tiny_checkpoint, calib, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    first = run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="blockpruner-oneshot,blockpruner",
                        scorer="racing")
    assert Plan.load(out / "blockpruner-oneshot").options["scorer"] == "incremental"
    assert Plan.load(out / "blockpruner").options["scorer"] == "racing"

    def refuse(*a, **k):
        raise AssertionError("finished work was redone")
    monkeypatch.setattr(cmp, "prune", refuse)
    assert run_compare(tiny_checkpoint, out, calib, FakeEvaluator(), methods="blockpruner-oneshot,blockpruner",
                       scorer="racing")["rows"] == first["rows"]


def test_a_compare_of_a_few_methods_into_a_folder_keeps_its_other_finished_rows(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "cmp"
    ev = FakeEvaluator()
    run_compare(tiny_checkpoint, out, calib, ev, methods="shortgpt,relative-magnitude,blockpruner")
    run_compare(tiny_checkpoint, out, calib, ev, methods="layer-ppl")  # a later run of one more method
    result = run_compare(tiny_checkpoint, out, calib, ev, methods="blockpruner:per-param")
    names = [r["method"] for r in result["rows"]]
    assert names == ["dense", "shortgpt", "relative-magnitude", "blockpruner", "layer-ppl", "blockpruner:per-param"]
    assert json.loads((out / "comparison.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    md = (out / "comparison.md").read_text()
    assert all(f"| {n} |" in md for n in names)
    # a folder evaluated under other settings is no row of this comparison
    again = cmp.compare(tiny_checkpoint, out, ratio=0.3, methods="layer-ppl",
                        options=PruneOptions(calibration=calib, nsamples=8, seqlen=32, scorer="plain"), tasks=TASKS,
                        evaluator=ev, eval_settings={"limit": 5}, progress=False)
    assert [r["method"] for r in again["rows"]] == ["dense", "layer-ppl"]


def test_width_methods_are_each_evaluated_once_with_their_own_ratio_and_calibration_ppl(tiny_checkpoint, calib,
                                                                                         tmp_path, monkeypatch):
    """Width plans remove no blocks: evaluation reuse keys on the pruned model (Plan.outcome.key), so two
    width methods that keep different units are both evaluated, while llm-bip and width-local under uniform
    allocation (the same units by construction) share one evaluation; each row has its own ratio and
    calibration perplexity, and `method:allocation` runs a method under both allocations side by side."""
    out = tmp_path / "cmp"
    ev = FakeEvaluator()
    methods = "llm-bip,wanda-sp,width-local,llm-bip:global"
    result = run_compare(tiny_checkpoint, out, calib, ev, methods=methods, ratio=0.1)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["dense", *methods.split(",")]
    plans = {m: Plan.load(out / m.replace(":", "-")) for m in methods.split(",")}
    assert plans["llm-bip:global"].options["allocation"] == "global" == plans["llm-bip:global"].width["allocation"]
    assert plans["llm-bip"].options["allocation"] == "uniform"
    for m, plan in plans.items():
        assert rows[m]["ratio"] == plan.width["ratio"] and 0 < rows[m]["ratio"] <= 0.1
        assert rows[m]["calibration_ppl"] == plan.width["ppl"] != rows["dense"]["calibration_ppl"]
        assert rows[m]["removed"] == []
    keys = {m: plan.outcome.key for m, plan in plans.items()}
    assert keys["llm-bip"] == keys["width-local"] and len({keys["llm-bip"], keys["wanda-sp"],
                                                           keys["llm-bip:global"]}) == 3
    evaluated = [t for t, _ in ev.calls]
    assert evaluated == [tiny_checkpoint, str(out / "llm-bip"), str(out / "wanda-sp"), str(out / "llm-bip-global")]
    assert json.loads((out / "width-local" / "eval.json").read_text())["same_removal_as"] == "llm-bip"
    for m in ("llm-bip", "wanda-sp", "llm-bip:global"):  # each row shows its own evaluation
        assert rows[m]["perplexity"]["wikitext2"] == 10.0 + evaluated.index(str(out / m.replace(":", "-"))) + 1

    # a later run of one method keeps the others' rows, the method:allocation one under its own label
    def refuse(*a, **k):
        raise AssertionError("finished work was redone")
    monkeypatch.setattr(cmp, "prune", refuse)
    again = run_compare(tiny_checkpoint, out, calib, refuse, methods="wanda-sp", ratio=0.1)
    assert sorted(r["method"] for r in again["rows"]) == sorted(["dense", *methods.split(",")])


def test_an_identical_model_from_an_earlier_invocation_shares_its_evaluation_and_flaps_bias_makes_another(
        tiny_checkpoint, calib, tmp_path):
    """One method per `compare` (bench/width/run.sh's lanes): width-local, the same units as the finished
    llm-bip, takes llm-bip's evaluation; flap-nobias keeps flap's units without the bias compensation, a
    different model, and is evaluated."""
    out = tmp_path / "cmp"
    ev = FakeEvaluator()
    for m in ("llm-bip", "width-local", "flap", "flap-nobias"):
        run_compare(tiny_checkpoint, out, calib, ev, methods=m, ratio=0.1)
    flap, nobias = Plan.load(out / "flap"), Plan.load(out / "flap-nobias")
    assert [d["kept_channels"] for d in flap.width["layers"]] == [d["kept_channels"] for d in nobias.width["layers"]]
    assert flap.outcome.key != nobias.outcome.key
    assert [t for t, _ in ev.calls] == [tiny_checkpoint, str(out / "llm-bip"), str(out / "flap"), str(out / "flap-nobias")]
    assert json.loads((out / "width-local" / "eval.json").read_text())["same_removal_as"] == "llm-bip"


def test_an_allocation_label_is_for_width_methods_only():
    e = cmp.parse_methods("llm-bip:global,flap:uniform,llm-bip")
    assert [(x.method, x.allocation, x.folder) for x in e] == [("llm-bip", "global", "llm-bip-global"),
                                                              ("flap", "uniform", "flap-uniform"),
                                                              ("llm-bip", None, "llm-bip")]
    with pytest.raises(UserError, match="shortgpt takes no allocation; allocations apply to .*llm-bip"):
        cmp.parse_methods("shortgpt:global")
    with pytest.raises(UserError, match="unknown metric or criterion 'sideways'.*global"):
        cmp.parse_methods("llm-bip:sideways")


def test_a_greedy_search_seeded_from_a_smaller_ratio_counts_only_the_saved_steps_it_keeps(tiny_checkpoint, calib,
                                                                                          tmp_path):
    small, large = tmp_path / "r18", tmp_path / "r45"
    run_compare(tiny_checkpoint, small, calib, FakeEvaluator(), methods="blockpruner", ratio=0.18)
    saved = Plan.load(small / "blockpruner")
    (large / "blockpruner").mkdir(parents=True)
    saved.save(large / "blockpruner" / "plan.json")  # the 18% search, to be extended to 45%
    (large / "blockpruner" / "timings.json").write_text(json.dumps(
        {"steps": [{"step": s["step"], "seconds": 1000.0} for s in saved.steps]}))
    result = run_compare(tiny_checkpoint, large, calib, FakeEvaluator(), methods="blockpruner", ratio=0.45)
    final = Plan.load(large / "blockpruner")
    shared = next(k for k, s in enumerate(saved.steps + [None]) if s is None or s != final.steps[k])
    assert final.options["ratio"] == 0.45 and 0 < shared < len(saved.steps)  # some saved steps searched again
    seconds = result["rows"][1]["search_seconds"]
    assert 1000.0 * shared < seconds < 1000.0 * shared + 300.0
    # a finished folder at another ratio is not this comparison's result: refused, as before
    with pytest.raises(UserError, match="different ratio"):
        run_compare(tiny_checkpoint, large, calib, FakeEvaluator(), methods="blockpruner", ratio=0.18)
