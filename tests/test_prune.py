"""End to end on a tiny saved checkpoint: the API and CLI, resume, reload, and every bad input."""
import argparse
import json

import pytest
import torch

import blockprune
from blockprune import cli, models
from blockprune.data import load_windows
from blockprune.errors import UserError
from blockprune.window_nll import perplexity
from blockprune.plan import Plan
from blockprune.view import BlockView
from conftest import byte_tokenizer, crash_after_saves, save_tiny_checkpoint, tiny_llama

OPTS = dict(num_blocks=3, nsamples=8, seqlen=32)


def run_prune(ckpt, calib, out, **kw):
    opts = {**OPTS, **kw}
    return blockprune.prune(ckpt, out, calibration=calib, progress=False, **opts)


def test_prune_writes_plan_and_a_checkpoint_that_reproduces_the_final_perplexity(tiny_checkpoint, calib_file, tmp_path):
    res = run_prune(tiny_checkpoint, calib_file, tmp_path / "run")
    plan = Plan.load(tmp_path / "run")
    assert plan.status == "done" and len(plan.removed) == 3
    assert plan.calibration["windows"] >= 2 and plan.calibration["seqlen"] == 32
    assert set(plan.versions) >= {"blockprune", "torch", "transformers"}
    for step in plan.steps:
        assert step["removed"] == min(step["scores"], key=lambda k: (step["scores"][k], BlockView.index_of(k)))
    reloaded = blockprune.load(res.checkpoint)
    dense, tok = models.load(tiny_checkpoint)
    # the removed weights are physically absent
    n_reloaded = sum(p.numel() for p in reloaded.parameters())
    assert n_reloaded == BlockView(dense).total_params - BlockView(dense).removed_params(plan.removed_blocks)
    w = load_windows(calib_file, tok, 32)
    view = BlockView(dense)
    assert torch.allclose(reloaded(w.ids).logits, view.logits(w.ids, plan.removed_blocks), atol=1e-4)
    assert perplexity(BlockView(reloaded), w) == pytest.approx(plan.steps[-1]["ppl"], rel=1e-4)


def test_same_inputs_give_a_byte_identical_plan(tiny_checkpoint, calib_file, tmp_path):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "a", export=False)
    run_prune(tiny_checkpoint, calib_file, tmp_path / "b", export=False, scorer="plain")
    a = json.loads((tmp_path / "a" / "plan.json").read_text())
    b = json.loads((tmp_path / "b" / "plan.json").read_text())
    assert a["removed"] == b["removed"]  # the exact incremental scorer selects what plain evaluation selects
    run_prune(tiny_checkpoint, calib_file, tmp_path / "c", export=False)
    assert (tmp_path / "a" / "plan.json").read_bytes() == (tmp_path / "c" / "plan.json").read_bytes()


def test_resume_after_a_crash_ends_with_the_same_plan(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "whole", export=False)
    restore = crash_after_saves(monkeypatch, 3)  # dense ppl, step 1, step 2: then the process "dies"
    with pytest.raises(KeyboardInterrupt):
        run_prune(tiny_checkpoint, calib_file, tmp_path / "killed", export=False)
    restore()
    partial = Plan.load(tmp_path / "killed")
    assert partial.status == "running" and len(partial.steps) == 2
    run_prune(tiny_checkpoint, calib_file, tmp_path / "killed", export=False, resume=True)
    assert (tmp_path / "killed" / "plan.json").read_bytes() == (tmp_path / "whole" / "plan.json").read_bytes()


def test_resume_removes_what_a_kill_mid_write_left(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "whole", export=False)
    restore = crash_after_saves(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_prune(tiny_checkpoint, calib_file, tmp_path / "killed", export=False)
    restore()
    killed = tmp_path / "killed"
    # what write_bytes leaves when the process dies between creating its temporary file and the rename
    (killed / ".plan.json.k1ll3d.tmp").write_text('{"half": ')
    (killed / ".timings.json.k1ll3d.tmp").write_text("")
    run_prune(tiny_checkpoint, calib_file, killed, export=False, resume=True)
    assert not list(killed.glob(".*.tmp"))
    assert (killed / "plan.json").read_bytes() == (tmp_path / "whole" / "plan.json").read_bytes()


def test_resume_refuses_a_state_from_other_options(tiny_checkpoint, calib_file, tmp_path):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False)
    with pytest.raises(UserError, match=r"made with different options: --block-type mix \(now mlp\)"):
        run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False, resume=True, block_type="mlp")
    other = save_tiny_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(UserError, match="another model"):
        run_prune(str(other), calib_file, tmp_path / "run", export=False, resume=True)


def test_resume_refuses_a_state_made_with_other_calibration_data(tiny_checkpoint, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat. " * 20)
    run_prune(tiny_checkpoint, str(calib), tmp_path / "run", export=False, num_blocks=2)
    before = (tmp_path / "run" / "plan.json").read_bytes()
    calib.write_text("a dog lay on the rug. " * 22)  # same file name, other text: only the data's hash tells
    with pytest.raises(UserError, match="other calibration data; it cannot be resumed"):
        run_prune(tiny_checkpoint, str(calib), tmp_path / "run", export=False, num_blocks=2, resume=True)
    assert (tmp_path / "run" / "plan.json").read_bytes() == before


def test_a_corrupt_timings_file_does_not_block_a_resume(tiny_checkpoint, calib_file, tmp_path, monkeypatch, capsys):
    restore = crash_after_saves(monkeypatch, 2)  # dense ppl, step 1: then the process "dies"
    with pytest.raises(KeyboardInterrupt):
        run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False)
    restore()
    timings = tmp_path / "run" / "timings.json"
    timings.write_bytes(b"\xff{ not json")  # timings only inform: they are not part of the state
    res = run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False, resume=True)
    assert res.plan.status == "done" and len(res.plan.steps) == 3
    assert "timings.json is unreadable" in capsys.readouterr().err
    assert [s["step"] for s in json.loads(timings.read_text())["steps"]] == [2, 3]


def test_a_tokenizer_without_a_pad_token_prunes(calib_file, tmp_path):
    tok = byte_tokenizer()
    tok.pad_token = None
    path = tmp_path / "no-pad"
    tiny_llama(vocab_size=len(tok), pad_token_id=None).save_pretrained(path)
    tok.save_pretrained(path)
    assert models.load(str(path))[1].pad_token_id is None
    res = run_prune(str(path), calib_file, tmp_path / "run")
    assert res.plan.status == "done" and len(res.plan.removed) == 3
    assert blockprune.load(res.checkpoint) is not None


def test_progress_bar_tells_the_step_and_the_run_time_left(capsys):
    from blockprune.progress import RunProgress as _Progress

    progress = _Progress(windows=4, steps=3)
    first = progress.bar(1, 10)
    assert first.desc == "step 1/3: 10 candidates"  # nothing timed yet: no estimate
    first.close()
    progress.step_done(10, 20.0)  # 2 s a candidate; steps 2 and 3 score 9 + 8 candidates
    second = progress.bar(2, 9)
    assert second.desc == "step 2/3: 9 candidates, run ~34 s left" and second.total == 9 * 4
    second.close()
    unknown = _Progress(windows=4, steps=None).bar(2, 9)  # --ratio: the number of steps is not known
    assert unknown.desc == "step 2: 9 candidates"
    unknown.close()


def test_a_raced_step_ends_its_bar_and_its_label_follows_the_step(monkeypatch):
    from blockprune import progress as bars

    clock = [100.0]
    monkeypatch.setattr(bars.time, "monotonic", lambda: clock[0])
    progress = bars.RunProgress(windows=4, steps=3)
    bar = progress.bar(1, 10)
    assert bar.desc == "step 1/3: 10 candidates"
    bar.update(1)  # the first update, the cache filled (instantly here): the pace is timed from it
    clock[0] += 10
    bar.update(20)  # then 2 candidate-windows a second: 19 left in this step (9.5 s), 9 + 8 candidates (2 s each)
    assert bar.desc == "step 1/3: 10 candidates, run ~44 s left"
    bar.close()  # racing stopped the rest early: the step is over all the same
    assert bar.n == bar.total == 40
    progress.step_done(10, 10.0)  # 21 of 40 ran; 10 s for the 39 offered after the first: 0.256 s each
    second = progress.bar(2, 9)
    assert second.desc == "step 2/3: 9 candidates, run ~17 s left"  # (9 + 8) x 4 x 0.256 s
    second.update(1)
    clock[0] += 4
    second.update(4)  # 1 window a second: 31 left, of which 21/40 will run (16.3 s), then 8 candidates (8.2 s)
    assert second.desc == "step 2/3: 9 candidates, run ~24 s left"
    second.close()
    racing = bars.RunProgress(windows=4, steps=3, races=True)  # until a step ends, racing's savings are unknown
    bar = racing.bar(1, 10)
    bar.update(1)
    clock[0] += 10
    bar.update(20)
    assert bar.desc == "step 1/3: 10 candidates, run at most ~44 s left"
    bar.close()
    racing.step_done(10, 10.0)
    bar = racing.bar(2, 9)
    assert bar.desc == "step 2/3: 9 candidates, run ~17 s left"
    bar.close()


def test_device_checks_availability_and_index(monkeypatch):
    from blockprune.api import check_device

    check_device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda")
    check_device("cuda:0", "--cache-device")
    with pytest.raises(UserError, match="--cache-device cuda:1: this machine has 1 cuda device"):
        check_device("cuda:1", "--cache-device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only torch
    with pytest.raises(UserError, match="--device cuda: no cuda device is available.*use --device cpu"):
        check_device("cuda")


def cli_run(capsys, *argv):
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("extra,message", [
    (["--model", "./no/such/model"], "does not exist"),
    (["--num-blocks", "100"], "more than the 8 candidate"),
    (["--ratio", "1.5"], "strictly between 0 and 1"),
    (["--ratio", "0"], "strictly between 0 and 1"),
    (["--num-blocks", "0"], "at least 1"),
    (["--seqlen", "256", "--nsamples", "1"], "above the model's context"),
    (["--calibration", "no_such_dataset"], "neither a file nor one of"),
    (["--block-type", "ffn"], "invalid choice"),
    (["--scorer", "racing", "--racing-z", "0"], "--racing-z must be positive"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_checkpoint, calib_file, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    argv = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--out", str(out), "--quiet"]
    if not any(a in extra for a in ("--num-blocks", "--ratio")):
        argv += ["--num-blocks", "2"]
    code, err = cli_run(capsys, *argv, *extra)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_calibration_shorter_than_one_window(tiny_checkpoint, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("only a few words")
    code, err = cli_run(capsys, "prune", "--model", tiny_checkpoint, "--calibration", str(short), "--seqlen", "64",
                        "--num-blocks", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2 and "fewer than one window" in err and not (tmp_path / "run").exists()


def test_unwritable_output_folder(tiny_checkpoint, calib_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = cli_run(capsys, "prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                        "--num-blocks", "1", "--out", str(blocker / "run"), "--quiet")
    assert code == 2 and f"--out {blocker / 'run'} is inside {blocker}, a file, not a folder" in err


def test_unsupported_architecture(tmp_path, calib_file, capsys):
    from transformers import BloomConfig, BloomForCausalLM

    from conftest import byte_tokenizer
    path = tmp_path / "bloom"
    BloomForCausalLM(BloomConfig(vocab_size=257, hidden_size=16, n_layer=2, n_head=2)).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    code, err = cli_run(capsys, "prune", "--model", str(path), "--calibration", calib_file, "--seqlen", "32",
                        "--num-blocks", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2 and "unsupported architecture 'bloom'" in err and "llama" in err and "Adapter" in err
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume(tiny_checkpoint, calib_file, tmp_path):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False, num_blocks=1)
    with pytest.raises(UserError, match="--resume"):
        run_prune(tiny_checkpoint, calib_file, tmp_path / "run", export=False, num_blocks=1)


def test_resume_without_a_plan_is_refused_even_when_quiet(tiny_checkpoint, calib_file, tmp_path, capsys):
    code, err = cli_run(capsys, "prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                        "--num-blocks", "1", "--out", str(tmp_path / "bp12x"), "--resume", "--quiet")
    assert code == 2 and len(err.splitlines()) == 1
    assert "nothing to resume in" in err and "drop --resume" in err
    assert not (tmp_path / "bp12x").exists()


def test_an_unreachable_hub_fails_at_once_with_the_close_alias(monkeypatch, capsys):
    def no_route(*a, **kw):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models.socket, "create_connection", no_route)
    monkeypatch.setattr(models, "_cached_snapshot", lambda repo_id: None)
    with pytest.raises(UserError, match=r"cannot be reached \(no network: .* is unreachable\);.*\(did you mean smollm2-135m\?\)$"):
        models.resolve("smollm2-13m")
    code, err = cli_run(capsys, "prune", "--model", "Qwen/Qwen2.5-0.5B", "--num-blocks", "1", "--quiet")
    assert code == 2 and len(err.splitlines()) == 1 and "did you mean" not in err and "unreachable" in err


def test_missing_alias_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(models.ALIASES, "fake-1m", models.Alias("no_such_pkg_xyz", "x.gguf", "pip install no-such-pkg"))
    monkeypatch.setenv("BLOCKPRUNE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="pip install no-such-pkg"):
        models.resolve("fake-1m")


def test_cli_prints_a_summary(tiny_checkpoint, calib_file, tmp_path, capsys):
    code = cli.main(["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                     "--num-blocks", "2", "--out", str(tmp_path / "run"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "removed 2 units" in out and "calibration perplexity" in out and "plan.json" in out
    assert (tmp_path / "run" / "model" / "config.json").exists()


def test_racing_z_binds_a_racing_plan_only(tiny_checkpoint, calib_file, tmp_path):
    kw = dict(num_blocks=1, calibration=calib_file, seqlen=32, nsamples=8, export=False, progress=False)
    raced = blockprune.prune(tiny_checkpoint, tmp_path / "r", scorer="racing", racing_z=2.0, **kw)
    exact = blockprune.prune(tiny_checkpoint, tmp_path / "e", scorer="incremental", **kw)
    assert raced.plan.options["racing_z"] == 2.0 and "racing_z" not in exact.plan.options


def test_every_option_of_every_command_explains_itself_and_its_default(capsys):
    from blockprune.cli import build_parser, main

    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.dest == "help":
                continue
            assert a.help, f"blockprune {name} {a.option_strings or a.dest} has no help"
        assert main([name, "--help"]) == 0
        shown = capsys.readouterr().out
        assert "(default: None)" not in shown, name  # a None default says in words what leaving it out means
    assert "(default: 0.0002)" in (main(["heal", "--help"]), capsys.readouterr().out)[1]


@pytest.mark.parametrize("command", ["prune", "eval", "heal", "verify", "compare"])
def test_every_command_refuses_an_unusable_device_before_loading(command, tmp_path, capsys):
    from blockprune.cli import main

    assert main([command, str(tmp_path), "--device", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --device: 'bogus' is not a torch device" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable cuda device")
def test_device_cuda_on_a_cpu_only_torch_names_the_option_once(capsys):
    assert cli.main(["prune", "--num-blocks", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("blockprune: error: argument --device: no cuda device is available to this torch")
    assert "--device cuda" not in err and "use --device cpu" in err


def test_the_prune_command_defaults_are_the_apis():
    from dataclasses import fields

    from blockprune.api import PruneOptions
    from blockprune.cli import build_parser

    from blockprune.options import declared_options, default

    parser, _ = build_parser()
    args = vars(parser.parse_args(["prune", "--out", "x", "--num-blocks", "2"]))
    shared = [f.name for f in fields(PruneOptions) if f.name in args and f.name != "num_blocks"]
    assert len(shared) >= 15
    declared = [n for n in declared_options() if n in args]  # the methods' and scorers' own, as declared
    assert len(declared) >= 8
    for name in shared + declared:
        assert args[name] == default(name), name


def test_cli_defaults_and_choices_are_the_apis():
    """prune's and compare's options default to PruneOptions' fields, and their choices are the registries'."""
    from dataclasses import fields

    from blockprune import cli, scoring
    from blockprune.methods import METHODS
    from blockprune.options import PruneOptions, declared_options, scorer_choices

    parser, _ = cli.build_parser()
    default = PruneOptions()
    for command, argv in (("prune", ["prune", "--num-blocks", "1"]), ("compare", ["compare", "--ratio", "0.2"])):
        args = vars(parser.parse_args(argv))
        names = [*(f.name for f in fields(PruneOptions)), *declared_options()]
        shared = [n for n in names if n in args and n not in ("num_blocks", "ratio")]
        assert len(shared) >= 12, (command, shared)
        assert {k: args[k] for k in shared} == {k: getattr(default, k) for k in shared}, command
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["prune"]._actions}
    assert sorted(actions["method"].choices) == sorted(METHODS)
    assert tuple(actions["metric"].choices) == scoring.metrics()
    assert tuple(actions["scorer"].choices) == scorer_choices()


def resumed_with_larger_ratio(method, small, large, ckpt, calib, tmp_path, capsys) -> bool:
    """Run at `small`, resume at `large`: the plan must be a fresh run's at `large`, byte for byte. Returns
    whether the resume searched some saved steps again."""
    common = dict(method=method, num_blocks=None, export=False)
    run_prune(ckpt, calib, tmp_path / "fresh", ratio=large, **common)
    run_prune(ckpt, calib, tmp_path / "run", ratio=small, **common)
    saved, fresh = Plan.load(tmp_path / "run"), Plan.load(tmp_path / "fresh")
    # the steps a run at `large` takes alike: those that scored the same candidates
    shared = next(k for k, s in enumerate(saved.steps + [None])
                  if s is None or set(s["scores"]) != set(fresh.steps[k]["scores"]))
    capsys.readouterr()
    blockprune.prune(ckpt, tmp_path / "run", calibration=calib, **{**OPTS, **common}, ratio=large, resume=True)
    err = capsys.readouterr().err
    assert (tmp_path / "run" / "plan.json").read_bytes() == (tmp_path / "fresh" / "plan.json").read_bytes()
    timed = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert [s["step"] for s in timed["steps"]] == [s["step"] for s in fresh.steps]
    if shared < len(saved.steps):  # a step the smaller budget narrowed is searched again, and the run says so
        assert f"--ratio {small} (now {large})" in err and f"the first {shared} of the {len(saved.steps)} saved" in err
        assert f"from step {shared + 1}" in err
    return shared < len(saved.steps)


def test_a_joint_search_resumed_with_a_larger_ratio_ends_as_a_fresh_run_at_it(tiny_checkpoint, calib_file, tmp_path,
                                                                             capsys):
    resumed_with_larger_ratio("blockpruner-joint", 0.2, 0.45, tiny_checkpoint, calib_file, tmp_path, capsys)


def test_a_larger_ratio_searches_again_the_steps_the_smaller_budget_narrowed(tiny_checkpoint, calib_file, tmp_path,
                                                                            capsys):
    # at 0.2 the attention block taken first leaves no room for an MLP block: the next step scored fewer
    # candidates than a run at 0.45 scores there, so it (and all after it) must be searched again
    assert resumed_with_larger_ratio("blockpruner", 0.2, 0.45, tiny_checkpoint, calib_file, tmp_path, capsys)


@pytest.mark.parametrize("before,after", [(2, 4), (3, 1)])
def test_a_greedy_run_resumed_with_another_num_blocks_ends_as_a_fresh_run_with_it(before, after, tiny_checkpoint,
                                                                                 calib_file, tmp_path):
    run_prune(tiny_checkpoint, calib_file, tmp_path / "fresh", num_blocks=after, export=False)
    run_prune(tiny_checkpoint, calib_file, tmp_path / "run", num_blocks=before, export=False)
    run_prune(tiny_checkpoint, calib_file, tmp_path / "run", num_blocks=after, export=False, resume=True)
    assert (tmp_path / "run" / "plan.json").read_bytes() == (tmp_path / "fresh" / "plan.json").read_bytes()
