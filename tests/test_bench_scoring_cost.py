"""bench/width/scoring_cost.py: each width method's scoring pass measured in a process of its own (seconds, peak
RSS) beside a baseline process (load + one forward pass), written to this machine's results file with the
machine record; a re-run keeps what was measured and refuses other settings. On a tiny random Llama."""
import json

import pytest
from conftest import bench_script

from blockprune import machine



@pytest.fixture(scope="module")
def scoring_cost():
    return bench_script("bench/width/scoring_cost.py")


def test_each_method_and_the_baseline_measured_in_its_own_process(scoring_cost, tiny_checkpoint, short_calib,
                                                                    tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cost"
    argv = ["--model", tiny_checkpoint, "--calibration", short_calib, "--seqlen", "32",
            "--methods", "llm-bip:global,llm-pruner", "--out", str(out)]
    assert scoring_cost.main(argv) == 0
    printed = capsys.readouterr().out
    path = machine.results_file(out)  # this kind of machine's own file
    assert list(out.iterdir()) == [path]
    rec = json.loads(path.read_text())
    assert list(rec["rows"]) == ["baseline", "llm-bip:global", "llm-pruner"]
    assert rec["settings"]["seqlen"] == 32 and rec["settings"]["ratio"] == 0.2
    (inv,) = rec["invocations"]
    assert inv["OMP_NUM_THREADS"] == "1" and inv["command"].startswith("python bench/width/scoring_cost.py --model")
    for label, row in rec["rows"].items():
        assert row["process_seconds"] > 0 and row["peak_rss_mib"] > 0
        m = row["machine"]  # the measuring process's own record
        assert m["cpu"]["model"] and m["torch_threads"] == 1 and len(m["load_average"]) == 3
        assert m["torch"] and m["transformers"] and len(m["load_average_end"]) == 3
        assert row["calibration"]["windows"] > 1 and row["calibration"]["seqlen"] == 32
        if label == "baseline":
            assert row["forward"]["seconds"] > 0 and row["load_seconds"] > 0
            continue
        assert row["scoring"]["seconds"] > 0 and row["scoring"]["peak_rss_mib"] > 0
        assert 0 < row["plan"]["ratio"] <= 0.2
        assert row["cli"].startswith(f"blockprune prune --model {tiny_checkpoint} --method {label.split(':')[0]} ")
    assert "--allocation global" in rec["rows"]["llm-bip:global"]["cli"]
    assert rec["rows"]["llm-pruner"]["plan"]["scoring"]["gradient_bytes"] > 0  # LLM-Pruner's gradients
    # the table: a row per process, the calibration, and the machine
    for label in ("baseline: load + one forward pass", "llm-bip:global", "llm-pruner"):
        assert f"| {label} |" in printed
    assert "Calibration: " in printed and "11 windows of 32 tokens" in printed
    assert f"Machine: {machine.summary(rec['rows']['baseline']['machine'], load=False)}" in printed
    assert "gradient_bytes" in printed

    # re-run: every row kept, nothing measured again; other settings refused, the file untouched
    assert scoring_cost.main(argv) == 0
    again = json.loads(path.read_text())
    assert again["rows"] == rec["rows"] and len(again["invocations"]) == 2
    assert scoring_cost.main([*argv, "--seqlen", "16"]) == 2
    assert json.loads(path.read_text()) == again
    capsys.readouterr()
    assert scoring_cost.main(["--show", str(path)]) == 0
    assert "| llm-pruner |" in capsys.readouterr().out
