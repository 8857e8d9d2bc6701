"""Every timing says which machine took it: timings.json per run part, compare.json per invocation."""
import json
import re

from blockprune import api, machine


def test_the_machine_record_names_the_cpu_its_flags_threads_versions_and_load():
    d = machine.describe()
    assert d["cpu"]["model"] and d["cpu"]["cores"] >= 1 and d["torch_threads"] >= 1
    assert set(d["cpu"]["flags"]) <= set(machine.SPEED_FLAGS)
    assert len(d["load_average"]) == 3 and d["torch"] and d["transformers"]
    assert re.fullmatch(r"[a-z0-9-]+", machine.tag())


def test_each_kind_of_machine_has_its_own_results_file_and_a_one_line_summary(tmp_path):
    assert machine.results_file(tmp_path) == tmp_path / f"{machine.tag()}.json"
    assert machine.results_file(tmp_path, ".md").name == f"{machine.tag()}.md"
    d = machine.describe()
    line = machine.summary(d)
    for part in (d["cpu"]["model"], *d["cpu"]["flags"], f"torch {d['torch']}", f"transformers {d['transformers']}",
                 "load average"):
        assert part in line
    # a file from before the records: its free text is kept and marked, nothing is made up
    assert machine.summary("x86_64, 2 cores") == "x86_64, 2 cores (a free-text record: no CPU model)"
    assert machine.summary(None) == "machine not recorded"


def test_a_resumed_run_records_each_part_and_its_machine(tiny_checkpoint, calib_file, tmp_path):
    common = dict(calibration=calib_file, seqlen=32, nsamples=8, progress=False, export=False)
    api.prune(tiny_checkpoint, tmp_path / "run", num_blocks=1, **common)
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert [m["from_step"] for m in timings["machines"]] == [1]
    assert timings["machines"][0]["cpu"] == machine.cpu()
    # the plan stays free of it: plans are byte-identical wherever they ran
    assert "machines" not in (tmp_path / "run" / "plan.json").read_text()


def test_a_tables_rows_name_the_machines_behind_their_figures_and_say_when_none_was_recorded(tmp_path):
    d = machine.describe()
    other = {**d, "cpu": {**d["cpu"], "model": "Other CPU"}, "load_average": [9.0, 9.0, 9.0]}
    old, resumed, evaluated = tmp_path / "old", tmp_path / "resumed", tmp_path / "evaluated"
    for f in (old, resumed, evaluated):
        f.mkdir()
    (old / "compare.json").write_text(json.dumps({"search_seconds": 1.0}))
    # steps 1-2 ran before machines were recorded, step 3 on `other`
    (resumed / "timings.json").write_text(json.dumps({"steps": [{}, {}, {}], "machines": [{"from_step": 3, **other}]}))
    (evaluated / "eval.json").write_text(json.dumps({"perplexity": {"wikitext2": {}}, "zero_shot": {"piqa": {}},
                                                     "machines": [{"measured": ["wikitext2", "piqa"], **d}]}))
    assert machine.folder_records(old) == [None] and machine.folder_records(tmp_path / "absent") == []
    assert machine.folder_records(resumed) == [None, {"from_step": 3, **other}]
    rows = {name: machine.folder_records(tmp_path / name) for name in ("old", "resumed", "evaluated", "absent")}
    assert machine.table_lines(rows) == [
        "Machine: not recorded: old, resumed, absent",
        f"Machine: {machine.summary(other, load=False)}: resumed",
        f"Machine: {machine.summary(d, load=False)}: evaluated"]
    assert "load average" not in machine.summary(d, load=False) and "Other CPU" in machine.table_lines(rows)[1]
    # an evaluation with a figure no record lists (an older part) is partly unrecorded
    (evaluated / "eval.json").write_text(json.dumps({"perplexity": {"wikitext2": {}}, "zero_shot": {"piqa": {}},
                                                     "machines": [{"measured": ["piqa"], **d}]}))
    assert machine.folder_records(evaluated) == [None, {"measured": ["piqa"], **d}]
