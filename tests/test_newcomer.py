"""What a new user hit in an hour of use (issue 34, item 5): each a one-line refusal or a plain-words fix."""
import json
from pathlib import Path

import pytest

from blockprune import cli
from conftest import crash_after_saves

QUICK = ["--seqlen", "32", "--nsamples", "8", "--quiet"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_refusal(code, err):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("blockprune: error: ") and "Traceback" not in err, err


def prune_run(ckpt, calib, out, *extra):
    return ["prune", "--model", ckpt, "--calibration", calib, "--out", out, *QUICK, *extra]


# -- output folders: checked by creating them, before any work, for every command that writes -------------

def test_report_into_an_existing_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "report.md"
    target.write_text("mine")
    code, _, err = run(capsys, "report", tmp_path / "no-run", "--out", target)
    one_line_refusal(code, err)
    assert f"--out {target} is a file, not a folder" in err and target.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_prune_into_proc_is_refused_before_the_model_loads(calib_file, tmp_path, capsys):
    # root passes os.access() on /proc, where nothing can be created: only trying tells
    code, _, err = run(capsys, *prune_run(str(tmp_path / "no-such-model"), calib_file, "/proc/bp", "--num-blocks", "1"))
    one_line_refusal(code, err)
    assert "cannot write to --out /proc/bp" in err


@pytest.fixture
def run_dir(tiny_checkpoint, calib_file, tmp_path):
    """A finished block-level run (no checkpoint)."""
    out = tmp_path / "run"
    assert cli.main(prune_run(tiny_checkpoint, calib_file, str(out), "--num-blocks", "2", "--block-type", "mha",
                              "--no-export")) == 0
    return out


@pytest.mark.parametrize("command", ["export", "eval", "compare", "heal", "report"])
@pytest.mark.parametrize("where", ["file", "proc"])
def test_every_command_that_writes_checks_its_out_folder_first(command, where, run_dir, tmp_path, capsys,
                                                               monkeypatch):
    from blockprune import models

    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "out" if where == "file" else Path("/proc/bp/out")
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded a model before checking --out"))
    argv = {"export": ["export", run_dir], "eval": ["eval", run_dir, "--tasks", "wikitext2"],
            "compare": ["compare", "--ratio", "0.2", "--tasks", "wikitext2"], "heal": ["heal", run_dir],
            "report": ["report", run_dir]}[command]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run(capsys, *argv, "--out", out)
    one_line_refusal(code, err)
    assert "--out" in err and ("not a folder" in err if where == "file" else "cannot write to --out" in err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_writable_out_folder_is_probed_without_a_trace(tmp_path):
    from blockprune.atomic import check_writable

    check_writable(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []  # the folders it made to try are gone again


# -- plans that would leave nothing ----------------------------------------------------------------------

@pytest.mark.parametrize("extra,what", [
    (["--method", "shortgpt", "--num-blocks", "4"], "would remove every layer of this 4-layer model"),
    (["--method", "layer-ppl", "--num-blocks", "4"], "would remove every layer"),
    (["--block-type", "mha", "--num-blocks", "4"], "would remove every attention block"),
    (["--num-blocks", "8"], "would remove every layer"),
    (["--method", "layer-ppl", "--ratio", "0.9"], "would remove every layer"),
    (["--block-type", "mha", "--ratio", "0.9"], "would remove every attention block"),
])
def test_a_plan_that_leaves_no_layer_or_no_attention_is_refused(extra, what, tiny_checkpoint, calib_file, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, *prune_run(tiny_checkpoint, calib_file, str(out), *extra))
    one_line_refusal(code, err)
    assert what in err and "choose" in err
    assert not out.exists()


def test_one_layer_fewer_is_allowed(tiny_checkpoint, calib_file, tmp_path, capsys):
    code, out, err = run(capsys, *prune_run(tiny_checkpoint, calib_file, str(tmp_path / "run"), "--method", "shortgpt",
                                            "--num-blocks", "3", "--no-export"))
    assert code == 0, err


# -- time left ---------------------------------------------------------------------------------------------

@pytest.fixture
def clock(monkeypatch):
    from blockprune import progress

    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_the_first_window_does_not_dominate_the_time_left(clock):
    from blockprune.progress import RunProgress

    progress = RunProgress(windows=10, steps=3)
    bar = progress.bar(1, 10)
    clock[0] += 50
    bar.update(1)  # the cache filled and the first window ran: 50 s, cold
    assert "left" not in bar.desc  # nothing to go on yet
    for _ in range(9):
        clock[0] += 1.0
        bar.update(1)  # then one window a second
    # 90 windows left in this step (90 s), then 9 + 8 candidates of 10 windows (170 s), 2 fills of 50 s
    assert bar.desc == "step 1/3: 10 candidates, run ~6 min left"
    clock[0] += 90
    bar.update(90)
    bar.close()
    progress.step_done(10, 149.0)
    second = progress.bar(2, 9)  # per candidate-window 1 s, 50 s to fill: 90 + 50, then 80 + 50
    assert second.desc == "step 2/3: 9 candidates, run ~4 min left"
    second.close()


def test_a_ratio_run_estimates_its_steps_from_the_parameter_budget(clock):
    from blockprune.progress import Budget, RunProgress

    sizes = {f"u{i}": 100 for i in range(10)}
    progress = RunProgress(windows=4, steps=None, budget=Budget(total=2000, ratio=0.2, sizes=sizes))
    bar = progress.bar(1, 10)  # a budget of 400 parameters: about 4 units of 100
    assert bar.desc == "step 1/~4: 10 candidates"
    bar.close()
    progress.step_done(10, 10.0, removed="u0")  # 1 s a candidate
    second = progress.bar(2, 9)
    assert second.desc == "step 2/~4: 9 candidates, run ~24 s left"  # 9 + 8 + 7 candidates
    second.close()
    resumed = RunProgress(windows=4, steps=None, budget=Budget(2000, 0.2, sizes, removed={"u0", "u1", "u2"}))
    last = resumed.bar(4, 7)
    assert last.desc == "step 4/~4: 7 candidates"
    last.close()


# -- small things ------------------------------------------------------------------------------------------

def test_eval_quick_with_limit_or_max_windows_is_refused(tmp_path, capsys, monkeypatch):
    from blockprune import models

    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded a model"))
    for extra in (["--max-windows", "2"], ["--limit", "20"], ["--max-windows", "2", "--limit", "20"]):
        code, _, err = run(capsys, "eval", tmp_path / "model", "--quick", *extra, "--out", tmp_path / "e")
        one_line_refusal(code, err)
        assert "--quick" in err and " ".join(extra[:2]) in err and "would do nothing" in err
    assert not (tmp_path / "e").exists()


def test_the_summary_asks_for_remote_code_only_when_the_checkpoint_ships_it(tiny_checkpoint, calib_file, tmp_path,
                                                                           capsys):
    code, out, _ = run(capsys, *prune_run(tiny_checkpoint, calib_file, str(tmp_path / "layers"), "--method", "shortgpt",
                                          "--num-blocks", "1"))
    assert code == 0
    assert "from_pretrained(path)" in out and "trust_remote_code" not in out
    assert "auto_map" not in json.loads((tmp_path / "layers" / "model" / "config.json").read_text())
    code, out, _ = run(capsys, *prune_run(tiny_checkpoint, calib_file, str(tmp_path / "blocks"), "--num-blocks", "1",
                                          "--block-type", "mha"))
    assert code == 0 and "from_pretrained(path, trust_remote_code=True)" in out


def test_shortgpt_step_lines_start_their_own_line(tiny_checkpoint, calib_file, tmp_path, capsys):
    argv = [a for a in prune_run(tiny_checkpoint, calib_file, str(tmp_path / "run"), "--method", "shortgpt",
                                 "--num-blocks", "2", "--no-export") if a != "--quiet"]
    code, _, err = run(capsys, *argv)
    assert code == 0
    for n in (1, 2):
        at = err.index(f"step {n}: removed")
        assert at == 0 or err[at - 1] in "\r\n", repr(err[max(at - 80, 0):at + 20])


def test_resume_says_where_it_continues(tiny_checkpoint, calib_file, tmp_path, capsys, monkeypatch):
    import blockprune

    out = tmp_path / "run"
    restore = crash_after_saves(monkeypatch, 2)  # the dense perplexity, then step 1
    with pytest.raises(KeyboardInterrupt):
        blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=3,
                         export=False, progress=False)
    restore()
    capsys.readouterr()
    blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=3, export=False,
                     resume=True)
    assert f"blockprune: resuming {out} from step 2 (1 step saved)" in capsys.readouterr().err


def test_resume_with_other_options_names_them_with_both_values(tiny_checkpoint, calib_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(prune_run(tiny_checkpoint, calib_file, str(out), "--num-blocks", "1", "--no-export")) == 0
    capsys.readouterr()
    code, _, err = run(capsys, *prune_run(tiny_checkpoint, calib_file, str(out), "--num-blocks", "2", "--no-export",
                                          "--block-type", "mlp", "--resume"))
    one_line_refusal(code, err)
    assert "a different" not in err
    assert "different options: " in err and "--block-type mix (now mlp)" in err and "--num-blocks 1 (now 2)" in err


def test_comparison_md_header_is_words_not_python_dicts():
    from blockprune.compare import markdown

    result = {"target_ratio": 0.2, "model": "smollm2-135m", "tasks": ["wikitext2"], "rows": [],
              "calibration": {"calibration": "alpaca", "nsamples": 256, "seqlen": 2048, "seed": 42},
              "eval": {"seqlen": 2048, "max_windows": None, "limit": 300, "num_fewshot": 0}}
    header = markdown(result).splitlines()[2]
    assert "{" not in header and "'" not in header and "None" not in header
    assert header == ("Model smollm2-135m; calibration alpaca, 256 rows, 2048-token windows, seed 42; evaluation "
                      "2048-token perplexity windows, every window, the first 300 documents of each task, zero-shot.")


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_help_never_breaks_a_task_name(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main([command, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "arc_challenge" in shown.replace("\n" + " " * 32, " ")  # whole, on one line
    assert not any(line.rstrip().endswith(("arc_challe", "arc_")) for line in shown.splitlines())


def test_one_window_is_singular(tiny_checkpoint, tmp_path, capsys):
    from blockprune.words import count

    assert (count(1, "window"), count(2, "window"), count(0, "doc")) == ("1 window", "2 windows", "0 docs")
    calib = tmp_path / "short.txt"
    calib.write_text("the cat sat on the mat and the dog sat on the log")  # one 32-token window
    code, out, err = run(capsys, *prune_run(tiny_checkpoint, str(calib), str(tmp_path / "run"), "--num-blocks", "1",
                                            "--no-export"))
    assert code == 0, err
    assert "1 window x 32 tokens" in out and "1 windows" not in out
    code, out, err = run(capsys, "eval", tiny_checkpoint, "--tasks", f"ppl:{calib}", "--seqlen", "32", "--no-cost",
                         "--out", tmp_path / "eval")
    assert code == 0, err
    assert "(1 window of 32)" in out and "(1 window)" in err and "1 windows" not in out + err


def test_export_vanilla_refuses_a_block_plan_before_loading_weights(run_dir, capsys, monkeypatch):
    from blockprune import models

    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded the weights before refusing"))
    code, _, err = run(capsys, "export", run_dir, "--format", "vanilla")
    one_line_refusal(code, err)
    assert "only expresses whole removed layers" in err and not (run_dir / "model-vanilla").exists()
