"""timings.json, through its one owner (blockprune/timings.py): what prune writes is what compare reads."""
import json

from blockprune import timings


def test_steps_the_monitors_passes_and_each_parts_machine_are_recorded_and_read_back(tmp_path):
    run = timings.Timings(tmp_path, resume=False, machine={"cpu": "first"})
    run.dense_validation(1.0)
    run.step(1, 10.0, 2.0)
    record = json.loads((tmp_path / timings.FILE).read_text())
    assert record == {"steps": [{"step": 1, "seconds": 10.0, "validation_seconds": 2.0}],
                      "machines": [{"from_step": 1, "cpu": "first"}], "dense_validation_seconds": 1.0,
                      "validation_seconds": 3.0, "validation_share": round(3 / 13, 4)}
    resumed = timings.Timings(tmp_path, resume=True, machine={"cpu": "second"})  # a resume on another machine
    resumed.step(2, 20.0, None)
    record = json.loads((tmp_path / timings.FILE).read_text())
    assert record["machines"] == [{"from_step": 1, "cpu": "first"}, {"from_step": 2, "cpu": "second"}]
    assert timings.saved_seconds(tmp_path) == 10.0 + 20.0 + 3.0


def test_an_unreadable_file_counts_nothing_and_a_helper_process_writes_nothing(tmp_path):
    (tmp_path / timings.FILE).write_text("{not json")
    assert timings.saved_seconds(tmp_path) == 0.0
    timings.Timings(tmp_path / "rank1", resume=False, machine={}, write=False).step(1, 5.0, None)
    assert not (tmp_path / "rank1").exists()
