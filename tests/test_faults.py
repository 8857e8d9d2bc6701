"""Fault injection: a full disk, corrupt state, NaN scores and a table of bad inputs (kills after a save:
tests/test_kills.py).

The tally of what was survived is printed at the end of the test session (see conftest.py)."""
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

import blockprune
from blockprune import atomic, cli
from blockprune.errors import UserError
from blockprune.scoring.incremental import IncrementalScorer
from blockprune.plan import Plan

#: kills: SIGKILLs that landed after a save (tests/test_kills.py), and at how many distinct saved states
TALLY = {"kills landed after a save": 0, "distinct kill points": 0, "bad inputs tried": 0, "faults injected": 0,
         "results lost": 0}


def folder_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != "timings.json"}


def prune_argv(ckpt, calib, out, *extra):
    return ["prune", "--model", ckpt, "--calibration", calib, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "4", "--out", str(out), "--quiet", *extra]


def test_disk_full_while_saving_keeps_the_previous_state(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = atomic.os.fdopen
    saves = {"n": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    def fdopen(fd, mode="r", *a, **k):
        saves["n"] += 1
        f = real(fd, mode, *a, **k)
        return FullDisk(f) if saves["n"] >= 4 else f  # plan, plan+timings of step 1, then the disk fills

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    with pytest.raises(UserError, match="No space left on device.*free some space"):
        blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=4,
                         progress=False)
    TALLY["faults injected"] += 1
    monkeypatch.setattr(atomic.os, "fdopen", real)
    plan = Plan.load(out)  # the last good state is intact and readable
    assert plan.status == "running" and len(plan.steps) == 1
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=4,
                     progress=False, resume=True, export=False)
    assert len(Plan.load(out).steps) == 4


def test_disk_full_inside_safetensors_keeps_the_previous_checkpoint(tiny_checkpoint, calib_file, tmp_path,
                                                                    monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    out = tmp_path / "run"
    blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=2, progress=False)
    before = folder_digest(out)

    def full_disk(*args, **kwargs):  # what safetensors' Rust writer raises on ENOSPC: not an OSError
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "serialize_file", full_disk)
    code = cli.main(["export", str(out), "--out", str(out / "model")])  # rewrite the checkpoint in place
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "No space left on device; free some space" in err
    assert folder_digest(out) == before  # plan and checkpoint as they were
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    TALLY["faults injected"] += 1


def test_a_kill_between_the_two_moves_of_a_folder_swap_is_recovered(tmp_path):
    final = tmp_path / "model"
    with atomic.staged_dir(final) as d:
        (d / "w").write_text("v1")
    os.replace(final, tmp_path / ".model.old")  # killed here: the previous version set aside, no target
    with pytest.raises(RuntimeError), atomic.staged_dir(final):  # the next write puts it back first
        raise RuntimeError("this write fails too")
    assert (final / "w").read_text() == "v1" and not (tmp_path / ".model.old").exists()
    (tmp_path / ".model.old").mkdir()  # killed after both moves: the old version is a leftover
    with atomic.staged_dir(final) as d:
        (d / "w").write_text("v2")
    assert (final / "w").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["model"]
    TALLY["faults injected"] += 2


def test_out_of_memory_names_the_options_that_reduce_memory(tiny_checkpoint, calib_file, tmp_path, monkeypatch,
                                                           capsys):
    def oom(self, removed, candidates, progress=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(IncrementalScorer, "score", oom)
    out = tmp_path / "run"
    code = cli.main(prune_argv(tiny_checkpoint, calib_file, out, "--no-export", "--scorer", "incremental"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "out of accelerator memory" in err
    assert all(flag in err for flag in ("--batch-size", "--cache-device", "--cache-every", "--dtype"))
    assert Plan.load(out).status == "running"  # the state so far (dense perplexity) is kept for --resume
    TALLY["faults injected"] += 1


def test_fp16_overflow_of_the_dense_model_is_reported(tiny_checkpoint, calib_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(blockprune.api, "perplexity", lambda *a, **k: float("inf"))
    out = tmp_path / "run"
    code = cli.main(prune_argv(tiny_checkpoint, calib_file, out, "--dtype", "fp16"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "perplexity is inf; fp16 overflows on this model: use --dtype bf16 or fp32" in err
    assert not out.exists()
    TALLY["faults injected"] += 1


def test_fp16_overflow_of_candidates_is_reported(tiny_checkpoint, calib_file, tmp_path, monkeypatch, capsys):
    real = IncrementalScorer.score

    def overflowing(self, removed, candidates, progress=None):
        scored = real(self, removed, candidates, progress)
        scored.scores[0] = float("inf")
        return scored

    monkeypatch.setattr(IncrementalScorer, "score", overflowing)
    blockprune.prune(tiny_checkpoint, tmp_path / "run", calibration=calib_file, seqlen=32, nsamples=8, num_blocks=1,
                     dtype="fp16", scorer="incremental", export=False)
    assert "ranked last (fp16 overflow is likely: use --dtype bf16 or fp32)" in capsys.readouterr().err
    TALLY["faults injected"] += 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "old-format", "other-options"])
def test_corrupt_or_foreign_state_is_refused(damage, tiny_checkpoint, calib_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(prune_argv(tiny_checkpoint, calib_file, out, "--no-export")) == 0
    plan_file = out / "plan.json"
    text = plan_file.read_text()
    extra = []
    if damage == "garbage":
        plan_file.write_bytes(os.urandom(200))
    elif damage == "truncated":
        plan_file.write_text(text[: len(text) // 2])
    elif damage == "old-format":
        plan_file.write_text(text.replace("blockprune.plan/1", "blockprune.plan/0"))
    else:
        extra = ["--block-type", "mha"]
    before = plan_file.read_bytes()
    code = cli.main(prune_argv(tiny_checkpoint, calib_file, out, "--no-export", "--resume", *extra))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert any(w in err for w in ("corrupt", "plan format", "different options"))
    assert plan_file.read_bytes() == before  # refused, never overwritten
    TALLY["faults injected"] += 1


def test_nan_candidates_are_ranked_last_and_reported(tiny_checkpoint, calib_file, tmp_path, monkeypatch, capsys):
    real = IncrementalScorer.score

    def poisoned(self, removed, candidates, progress=None):
        scored = real(self, removed, candidates, progress)
        scored.scores[0] = float("nan")  # the first candidate of every step blows up
        scored.scores[1] = float("inf")
        return scored

    monkeypatch.setattr(IncrementalScorer, "score", poisoned)
    res = blockprune.prune(tiny_checkpoint, tmp_path / "run", calibration=calib_file, seqlen=32, nsamples=8,
                           num_blocks=3, scorer="incremental", progress=True, export=False)
    for step in res.plan.steps:
        names = list(step["scores"])
        assert step["faults"] == names[:2] and step["removed"] not in names[:2]
        assert step["scores"][names[0]] is None
    json.loads((tmp_path / "run" / "plan.json").read_text())  # still strict JSON (no NaN literals)
    assert "inf/NaN perplexity" in capsys.readouterr().err
    TALLY["faults injected"] += 3


BAD = [
    (["--model", "/no/such/model"], "does not exist"),
    (["--model", "smollm3-999b-typo"], "the hugging face hub cannot be reached (hf_hub_offline is set)"),
    (["--model", "smollm2-13m"], "did you mean smollm2-135m?"),
    (["--ratio", "1.0"], "strictly between 0 and 1"),
    (["--ratio", "-0.1"], "strictly between 0 and 1"),
    (["--num-blocks", "0"], "at least 1"),
    (["--num-blocks", "2", "--ratio", "0.1"], "not allowed with"),
    (["--num-blocks", "99"], "candidate units"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--cache-every", "0"], "--cache-every must be at least 1"),
    (["--nsamples", "0"], "--nsamples must be at least 1"),
    (["--seqlen", "1"], "--seqlen must be at least 2"),
    (["--seqlen", "100000"], "above the model's context"),
    (["--dtype", "int3"], "invalid choice"),
    (["--scorer", "magic"], "invalid choice"),
    (["--calibration", "no_such_set"], "neither a file nor one of"),
    (["--calibration", "EMPTY"], "empty"),
    (["--calibration", "NOTJSON"], "not valid json"),
    (["--calibration", "NUMBERS"], "rows must be strings"),
    (["--resume", "--out", "CORRUPT"], "corrupt"),
    (["--resume"], "nothing to resume in"),
    (["--calibration", "LATIN1"], "is not UTF-8 text"),
    (["--device", "bogus"], "argument --device: 'bogus' is not a torch device"),
    (["--device", "cuda:99"], "cuda device"),  # none on a CPU-only torch, too few on a GPU machine
    (["--cache-device", "bogus"], "--cache-device 'bogus' is not a torch device"),
    (["--metric", "bi", "--scorer", "racing"], "--scorer racing does nothing with --metric bi"),
    (["--method", "shortgpt", "--metric", "bi"], "--metric bi does nothing with --method shortgpt"),
    (["--method", "llm-bip", "--ratio", "0.2", "--metric", "rm"], "--metric rm does nothing with --method llm-bip"),
    (["--method", "blockpruner-refined", "--metric", "js"], "does nothing with --method blockpruner-refined"),
    (["--method", "relative-magnitude", "--scorer", "plain"], "--scorer plain does nothing with --method"),
    (["--method", "shortgpt", "--block-type", "mha"], "--block-type mha does nothing with --method shortgpt"),
    (["--method", "layer-ppl", "--block-type", "mlp"], "--block-type mlp does nothing with --method layer-ppl"),
    (["--allocation", "global"], "--allocation applies to width methods only, not --method blockpruner"),
    (["--scorer", "incremental", "--racing-z", "2"], "--racing-z applies to --scorer racing and fast only"),
    (["--method", "width-magnitude"], "give --ratio r, not --num-blocks"),
    # checked against the loaded model, before plan.json is written
    (["--method", "llm-bip", "--ratio", "0.2", "--layers", "7:9"], "selects no layers; the model has layers 0..3"),
    (["--method", "wanda-sp", "--ratio", "0.2", "--layers", "1,9"], "selects layers [9]"),
    (["--method", "blockpruner-evo", "--ratio", "0.2", "--scorer", "plain"], "--scorer plain does not keep"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_table(extra, message, tiny_checkpoint, calib_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "numbers.json").write_text("[1, 2, 3]")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e ".encode("latin-1") * 20)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "plan.json").write_text("{")
    subst = {"EMPTY": str(tmp_path / "empty.txt"), "NOTJSON": str(tmp_path / "bad.json"),
             "NUMBERS": str(tmp_path / "numbers.json"), "CORRUPT": str(corrupt), "LATIN1": str(tmp_path / "latin1.txt")}
    extra = [subst.get(a, a) for a in extra]
    out = tmp_path / "out"
    argv = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--out", str(out), "--quiet"]
    if "--num-blocks" not in extra and "--ratio" not in extra:
        argv += ["--num-blocks", "2"]
    code = cli.main(argv + extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.lower() in err.lower() and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    TALLY["bad inputs tried"] += 1


def test_export_and_verify_refuse_bad_run_folders(tmp_path, capsys, tiny_checkpoint, calib_file):
    assert cli.main(["export", str(tmp_path)]) == 2
    assert "no plan" in capsys.readouterr().err
    out = tmp_path / "run"
    blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=1,
                     progress=False, export=False)
    plan = json.loads((out / "plan.json").read_text())
    plan["status"] = "running"
    (out / "plan.json").write_text(json.dumps(plan))
    assert cli.main(["verify", str(out)]) == 2
    assert "unfinished" in capsys.readouterr().err
    TALLY["bad inputs tried"] += 2


def test_eval_refuses_unknown_task_names(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    out = tmp_path / "eval"
    code = cli.main(["eval", tiny_checkpoint, "--tasks", "wikitext2,piqa,no_such_task", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "unknown task 'no_such_task'" in err and "lm-eval ls tasks" in err
    assert not out.exists()
    TALLY["bad inputs tried"] += 1


def test_verify_confirms_a_finished_run(tiny_checkpoint, calib_file, tmp_path, capsys):
    out = tmp_path / "run"
    blockprune.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=2, progress=False)
    assert cli.main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verified" in text and "exported checkpoint" in text
    plan = json.loads((out / "plan.json").read_text())
    plan["steps"][-1]["ppl"] *= 1.01  # a tampered record no longer verifies
    (out / "plan.json").write_text(json.dumps(plan))
    assert cli.main(["verify", str(out)]) == 1


def test_a_kill_inside_the_first_save_leaves_nothing_once_the_run_starts_again(tiny_checkpoint, calib_file, tmp_path):
    """Killed while writing its first plan.json, a run leaves only the temporary file: the next run (no
    --resume, there is nothing to resume) removes it."""
    from blockprune import api

    out = tmp_path / "run"
    out.mkdir()
    (out / ".plan.json.abc123.tmp").write_text("{half a plan")
    (out / ".timings.json.def456.tmp").write_text("{")
    api.prune(tiny_checkpoint, out, calibration=calib_file, seqlen=32, nsamples=8, num_blocks=1, progress=False,
              export=False)
    assert not list(out.glob(".*.tmp")) and (out / "plan.json").exists()
