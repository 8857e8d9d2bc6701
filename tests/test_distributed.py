"""Two processes (torchrun, gloo on CPU) split the candidates and end with the single-process plan."""
import os
import subprocess
import sys

from blockprune import cli


def test_two_process_search_equals_single_process(tiny_checkpoint, calib_file, tmp_path):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--no-export", "--quiet"]
    assert cli.main(args + ["--out", str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", "29533",
                           "-m", "blockprune.cli", *args, "--out", str(tmp_path / "multi")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = (tmp_path / "single" / "plan.json").read_bytes()
    multi = (tmp_path / "multi" / "plan.json").read_bytes()
    assert multi == single
