"""SIGKILL after a save, for every command that saves a state: `prune` (every method with steps), `compare`,
`heal` and `export`. Each run is a forked child whose every save (an atomic write that changes a file; a
staged folder built, then moved into place) is logged and followed by a short pause; the test kills the
child with SIGKILL in the pause after a save once a state it can continue from is on disk, checks that
the kill landed there (no later save), continues the run (`--resume`, or the command again) and kills it
again, a few times, then lets it finish and compares with an uninterrupted run: byte-identical plans, the
same checkpoint tensors. The kills that landed are counted in the fault tally (tests/test_faults.py)."""
import hashlib
import json
import os
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blockprune import atomic, cli
from blockprune.plan import Plan
from conftest import save_tiny_checkpoint
from test_faults import TALLY

PAUSE = 0.3  # seconds a child waits after each save: the window the kill lands in
KILLS = 3  # kills per run before it is let finish (each after a later save than the one before)
#: distinct (run, saved state) pairs the kills below landed at; the issue's target is 20
POINTS: set[tuple[str, str]] = set()


READY = "\tready"  # a logged save after which a state to continue from is on disk


def _hook(log: Path, pause: float, ready) -> None:
    """In the child: log every save (marked READY where `ready()` holds just after it) and pause after it.
    The child judges `ready()` itself, between the save and its log line: judged by the parent, the file
    system could already hold the next save while the log still shows this one."""
    write_bytes, staged_dir = atomic.write_bytes, atomic.staged_dir

    def saved(what: str) -> None:
        with open(log, "a") as f:
            f.write(what + (READY if ready() else "") + "\n")
        time.sleep(pause)

    def logged_write(path, data):
        path = Path(path)
        # a rewrite of the same state is no new save, nor is a file of a folder still being staged
        new = not (path.exists() and path.read_bytes() == data) and not path.parent.name.endswith(".tmp")
        write_bytes(path, data)
        if new:
            saved(f"wrote {path.name}")

    @contextmanager
    def logged_staged(final):
        with staged_dir(final) as tmp:
            yield tmp
            saved(f"staged {Path(final).name}")  # complete, not yet moved into place: the riskiest moment
        saved(f"moved {Path(final).name}")

    atomic.write_bytes, atomic.staged_dir = logged_write, logged_staged


def _saves(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def run_child(fn, log: Path, kill: bool, saved=lambda: True) -> bool:
    """Run `fn` in a forked child; with `kill`, SIGKILL it in the pause after its first save that leaves
    a saved state (`saved()`, judged in the child as it logs the save). Returns whether it was killed (else
    it finished, with exit status 0)."""
    log.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without pytest's teardown
        code = 1
        try:
            _hook(log, PAUSE if kill else 0.0, saved)  # a run not to be killed need not wait
            code = fn() or 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, "the run failed"
            return False
        lines = log.read_text().splitlines() if log.exists() else []
        n = len(lines)
        if kill and n >= 1 and lines[-1].endswith(READY):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            assert _saves(log) == n, "the kill landed after a later save than the one it waited for"
            return True
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the run took more than 300 s")


def digest(path: Path) -> str:
    """Everything saved under `path` (wall times aside)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != "timings.json":
            h.update(str(p.relative_to(path)).encode() + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _landed(label: str, state: Path) -> None:
    POINTS.add((label, digest(state)))
    TALLY["kills landed after a save"] += 1
    TALLY["distinct kill points"] = len(POINTS)


def same(got, want) -> bool:
    """A resumed run's result against the uninterrupted one's; a difference is a result lost (the tally)."""
    if got != want:
        TALLY["results lost"] += 1
    return got == want


def kill_and_finish(label: str, tmp_path: Path, start, again, state: Path, saved) -> None:
    """Kill the run `KILLS` times, each after a save (`again` continues it), then let it finish.
    `saved()` says that a kill found a saved state."""
    for kill in range(KILLS + 1):
        if not run_child(again if kill else start, tmp_path / "saves.log", kill=kill < KILLS, saved=saved):
            return
        assert saved(), f"{label}: killed after a save, yet no saved state"  # still, once it is dead
        _landed(label, state)


def prune_args(ckpt, calib, out, extra) -> list[str]:
    return ["prune", "--model", ckpt, "--calibration", calib, "--seqlen", "32", "--nsamples", "8",
            "--out", str(out), "--quiet", *extra]


# every method that takes steps; each with export, whose staged checkpoint is a save too
PRUNE = {
    "blockpruner": ["--num-blocks", "3"],
    "blockpruner-bi": ["--num-blocks", "3", "--metric", "bi"],
    "per-param": ["--ratio", "0.4", "--criterion", "per-param"],
    "blockpruner-oneshot": ["--method", "blockpruner-oneshot", "--num-blocks", "3"],
    "blockpruner-refined": ["--method", "blockpruner-refined", "--num-blocks", "3"],
    "layer-ppl": ["--method", "layer-ppl", "--num-blocks", "2"],
    "blockpruner-joint": ["--method", "blockpruner-joint", "--ratio", "0.4"],
    "blockpruner-evo": ["--method", "blockpruner-evo", "--ratio", "0.3", "--generations", "4"],
    "shortgpt": ["--method", "shortgpt", "--num-blocks", "2"],
    "relative-magnitude": ["--method", "relative-magnitude", "--num-blocks", "2"],
}


@pytest.mark.parametrize("name", sorted(PRUNE))
def test_prune_killed_after_saves_resumes_to_the_uninterrupted_run(name, tiny_checkpoint, calib_file, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    run = lambda folder, *more: lambda: cli.main(prune_args(tiny_checkpoint, calib_file, folder, [*PRUNE[name], *more]))
    assert not run_child(run(reference), tmp_path / "reference.log", kill=False)
    kill_and_finish(f"prune {name}", tmp_path, run(out), run(out, "--resume"), out,
                    lambda: (out / "plan.json").exists() and Plan.load(out).status in ("running", "done"))
    assert same((out / "plan.json").read_bytes(), (reference / "plan.json").read_bytes())
    assert same(digest(out), digest(reference))  # the checkpoint too, and nothing left over


class Evaluator:
    """A deterministic stand-in for lm-eval: the same figures in every process."""

    def __call__(self, target, tasks, out):
        return {"perplexity": {"wikitext2": {"ppl": 12.5}}, "zero_shot": {}, "settings": {"tasks": list(tasks)}}


def test_compare_killed_after_saves_resumes_to_the_uninterrupted_run(tiny_checkpoint, calib_file, tmp_path):
    from blockprune import compare as cmp
    from blockprune.api import PruneOptions

    def run(folder):
        opts = PruneOptions(calibration=calib_file, nsamples=8, seqlen=32, scorer="incremental")
        return lambda: cmp.compare(tiny_checkpoint, folder, ratio=0.3, methods="shortgpt,blockpruner,layer-ppl",
                                   options=opts, tasks=("wikitext2",), evaluator=Evaluator(), progress=False) and 0

    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert not run_child(run(reference), tmp_path / "reference.log", kill=False)
    kill_and_finish("compare", tmp_path, run(out), run(out), out, lambda: any(out.glob("*/plan.json")))
    for plan in reference.glob("*/plan.json"):
        assert same((out / plan.parent.name / "plan.json").read_bytes(), plan.read_bytes())
    rows = [json.loads((d / "comparison.json").read_text())["rows"] for d in (out, reference)]
    assert [r["method"] for r in rows[0]] == [r["method"] for r in rows[1]]


def test_heal_killed_after_saves_resumes_to_the_uninterrupted_run(tmp_path):
    from blockprune.heal import heal

    ckpt = str(save_tiny_checkpoint(tmp_path / "ckpt", max_position_embeddings=512))  # room for a prompt
    rows = [{"instruction": f"Name item {i}.", "input": "", "output": f"Item {i} is {'x' * (i % 5 + 2)}."}
            for i in range(16)]
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows))
    kw = dict(data=str(data), rank=4, alpha=8, steps=5, max_length=256, val_size=2, save_every=1, lr=5e-3,
              progress=False)
    run = lambda folder, resume=False: lambda: heal(ckpt, folder, resume=resume, **kw) and 0
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert not run_child(run(reference), tmp_path / "reference.log", kill=False)
    kill_and_finish("heal", tmp_path, run(out), run(out, resume=True), out,
                    lambda: (out / "adapter" / "state.json").exists())
    a, b = (load_file(d / "model" / "model.safetensors") for d in (out, reference))
    assert same(a.keys(), b.keys()) and same([torch.equal(a[k], b[k]) for k in a], [True] * len(a))


@pytest.mark.parametrize("fmt", ["vanilla", "remote-code", "nemotron-nas"])
def test_export_killed_after_its_checkpoint_is_staged_writes_it_again(fmt, tiny_checkpoint, calib_file, tmp_path):
    """export has one save, its staged checkpoint: killed before it moves into place, the command run again
    writes the same checkpoint and leaves no staging folder behind."""
    run_dir = tmp_path / "run"
    method = ["--method", "layer-ppl", "--num-blocks", "1"] if fmt == "vanilla" else ["--num-blocks", "2"]
    assert cli.main(prune_args(tiny_checkpoint, calib_file, run_dir, [*method, "--no-export"])) == 0
    export = lambda out: lambda: cli.main(["export", str(run_dir), "--format", fmt, "--out", str(out)])
    reference, out = tmp_path / "reference", run_dir / f"model-{fmt}"
    assert not run_child(export(reference), tmp_path / "reference.log", kill=False)
    staged = lambda: any(run_dir.glob(f".model-{fmt}.*.tmp")) and not out.exists()
    assert run_child(export(out), tmp_path / "saves.log", kill=True, saved=staged)
    assert staged(), "killed after its checkpoint was staged, yet no staged checkpoint"
    _landed(f"export {fmt}", run_dir)
    assert not run_child(export(out), tmp_path / "saves.log", kill=False)
    assert same(digest(out), digest(reference)) and not list(run_dir.glob(".*.tmp"))


def test_the_kills_landed_at_twenty_distinct_points_or_more():
    """Run after the tests above (file order): across the four commands, the distinct saved states the
    kills landed at."""
    if len({label for label, _ in POINTS}) < 4 + len(PRUNE):
        pytest.skip("run with the whole module: the tests above collect the kill points")
    assert len(POINTS) >= 20
