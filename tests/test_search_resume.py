"""The new searches killed with SIGKILL after a save has landed resume to the uninterrupted plan, byte for byte."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

SEARCHES = {
    "joint": ["--method", "blockpruner-joint", "--ratio", "0.4"],
    "per-param": ["--method", "blockpruner", "--criterion", "per-param", "--ratio", "0.4"],
    "evo": ["--method", "blockpruner-evo", "--ratio", "0.3", "--generations", "5"],
}


def progress(plan_path) -> int:
    """Saved units of work: steps, and a population search's generations."""
    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, ValueError):
        return 0
    return len(plan["steps"]) + len((plan.get("search") or {}).get("history", []))


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_killed_after_a_save_the_search_resumes_to_the_same_plan(search, tiny_checkpoint, calib_file, tmp_path):
    from blockprune import cli

    def args(out, resume=False):
        return ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
                "--out", str(out), "--no-export", "--quiet", *SEARCHES[search], *(["--resume"] if resume else [])]

    # the uninterrupted and the resumed run in this process, the killed one in its own
    assert cli.main(args(tmp_path / "reference")) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "blockprune.cli", *args(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and progress(out / "plan.json") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    landed = proc.poll() is None  # killed after its first saved unit of work, before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert landed, "the run finished before a kill could land after a save"
    saved = json.loads((out / "plan.json").read_text())
    assert saved["status"] == "running" and progress(out / "plan.json") >= 1
    assert cli.main(args(out, resume=True)) == 0
    assert (out / "plan.json").read_bytes() == (tmp_path / "reference" / "plan.json").read_bytes()
