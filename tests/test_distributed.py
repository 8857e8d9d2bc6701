"""Two processes (torchrun, gloo on CPU) split the candidates: an exact scorer ends with the single-process
plan byte for byte; a racing scorer (each rank races its own share) removes the same units in the same
order, though its per-step race records differ."""
import json

import pytest

from blockprune import cli
from conftest import torchrun_cli

@pytest.mark.parametrize("scorer,port", [("incremental", 29533), ("racing", 29534), ("fast", 29535)])
def test_two_process_search_equals_single_process(tiny_checkpoint, calib_file, tmp_path, scorer, port):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--scorer", scorer, "--no-export", "--quiet"]
    if scorer == "fast":
        args += ["--fast-dtype", "bf16"]  # on any CPU (emulated where it is not native)
    assert cli.main(args + ["--out", str(tmp_path / "single")]) == 0
    proc = torchrun_cli(args + ["--out", str(tmp_path / "multi")], port=port)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = (tmp_path / "single" / "plan.json").read_bytes()
    multi = (tmp_path / "multi" / "plan.json").read_bytes()
    if scorer == "incremental":
        assert multi == single
    else:
        removed = [[s["removed"] for s in json.loads(p)["steps"]] for p in (single, multi)]
        assert removed[0] == removed[1] and len(removed[0]) == 3
