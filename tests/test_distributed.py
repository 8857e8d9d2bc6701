"""Two processes (torchrun, gloo on CPU) split the candidates and end with the single-process plan."""
from blockprune import cli
from conftest import torchrun_cli


def test_two_process_search_equals_single_process(tiny_checkpoint, calib_file, tmp_path):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--no-export", "--quiet"]
    assert cli.main(args + ["--out", str(tmp_path / "single")]) == 0
    proc = torchrun_cli(args + ["--out", str(tmp_path / "multi")], port=29533)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = (tmp_path / "single" / "plan.json").read_bytes()
    multi = (tmp_path / "multi" / "plan.json").read_bytes()
    assert multi == single
