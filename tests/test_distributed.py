"""Two processes (torchrun, gloo on CPU) split the candidates: an exact scorer ends with the single-process
plan byte for byte; a racing scorer (each rank races its own share) removes the same units in the same
order, though its per-step race records differ. A metric reaches every rank's scorer and the plan."""
import json

import pytest

from conftest import single_and_torchrun

@pytest.mark.parametrize("scorer", ["incremental", "racing", "fast"])
def test_two_process_search_equals_single_process(tiny_checkpoint, calib_file, tmp_path, scorer):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--scorer", scorer, "--no-export", "--quiet"]
    if scorer == "fast":
        args += ["--fast-dtype", "bf16"]  # on any CPU (emulated where it is not native)
    single, multi = single_and_torchrun(args, tmp_path)
    if scorer == "incremental":
        assert multi == single
    else:
        removed = [[s["removed"] for s in json.loads(p)["steps"]] for p in (single, multi)]
        assert removed[0] == removed[1] and len(removed[0]) == 3


def test_a_metric_ranked_one_shot_run_records_its_metric_under_torchrun(tiny_checkpoint, calib_file, tmp_path):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--method", "blockpruner-oneshot", "--metric", "bi", "--no-export", "--quiet"]
    single, multi = (json.loads(p)["steps"] for p in single_and_torchrun(args, tmp_path))
    assert [s["metric"] for s in multi] == ["bi"] * 3
    # the same scores and removals; each process ran the metric's one pass, which the windows count says
    assert [(s["removed"], s["score"], s["ppl"], s["scores"]) for s in multi] == \
        [(s["removed"], s["score"], s["ppl"], s["scores"]) for s in single]
