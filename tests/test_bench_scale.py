"""bench/scale (issue 31, item 3) on a tiny config: a size's record, its table and its figure are produced,
a finished size is kept when the bench runs again, and a size that cannot run is skipped with its reason.
No timing is asserted: the figures are whatever this machine measures."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "scale" / "run.py"
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 128, "tie_word_embeddings": True}


def bench(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got = subprocess.run([sys.executable, str(RUN), *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-3000:]
    return got


def test_a_size_is_recorded_kept_and_a_size_that_cannot_fit_is_skipped_with_its_reason(tmp_path):
    configs, results = tmp_path / "configs", tmp_path / "results"
    for name, hidden in (("tiny", 64), ("wide", 128)):
        (configs / name).mkdir(parents=True)
        (configs / name / "config.json").write_text(json.dumps({**TINY, "hidden_size": hidden}))
    common = ("--configs", configs, "--results", results, "--work", tmp_path, "--seqlen", 32)
    bench(*common, "--sizes", "tiny", "--candidates", 2, "--note", "a test")
    [path] = results.glob("*.json")
    tiny = json.loads(path.read_text())["sizes"]["tiny"]
    assert tiny["status"] == "done" and tiny["dtype"] == "fp32" and tiny["note"] == "a test"
    assert "--candidates 2" in tiny["command"] and tiny["machine"]["cpu"]["model"]
    assert list(tiny["phases"]) == ["load", "dense pass", "blockpruner racing", "layer-ppl racing", "blockpruner exhaustive",
                                    "layer-ppl exhaustive", "export", "reload", "shortgpt", "llm-bip"]
    for phase in ("blockpruner racing", "layer-ppl exhaustive"):
        p = tiny["phases"][phase]
        assert p["candidates"] == 2 and p["pool"] == (6 if phase.startswith("blockpruner") else 3)
        assert 0 < p["evaluated_windows"] <= p["exhaustive_windows"] == 2 * 2  # 2 candidates x 2 windows
        assert p["estimate_seconds"] is None  # a partial step's time is no full step's: not compared
        assert p["peak_rss"] > 0 and p["estimate_needed"] <= p["estimate_peak"]
    # each one-shot phase in a fresh process: the allocator's leftovers from the steps would move its peak
    pids = {tiny["pid"], tiny["phases"]["shortgpt"]["pid"], tiny["phases"]["llm-bip"]["pid"]}
    assert len(pids) == 3, pids
    for method in ("shortgpt", "llm-bip"):  # timed in the pass's own process right after it
        lo, hi = tiny["phases"][method]["estimate_seconds"]
        assert 0 < lo <= hi
    assert not list(tmp_path.glob("scale-tiny-*")), "the size's checkpoint is left behind"

    # again, with a memory limit no model fits: the finished size is kept as it was, the new one skipped
    out = bench(*common, "--memory", 0.001).stdout
    assert "tiny: done before, kept" in out
    sizes = json.loads(path.read_text())["sizes"]
    assert sizes["tiny"] == tiny
    assert sizes["wide"]["status"] == "skipped" and "more than the 1.0 MiB allowed (--memory)" in sizes["wide"]["reason"]

    shown = bench("--show", path).stdout
    assert "| tiny | " in shown and "| blockpruner racing |" in shown and "| llm-bip |" in shown
    assert "- wide (" in shown and "skipped: fp32 needs" in shown
    assert "blockpruner racing 2 of 6" in shown and "evenly spaced through the depth" in shown
    assert "; llm-bip took " in shown and "; shortgpt took " in shown
    assert "Machine: " in shown
    png = path.with_suffix(".png")
    png.unlink()
    bench("--figure", path)
    assert png.stat().st_size > 0

    # a pass recorded before the bench timed estimates: --time-estimates adds the range, with its command
    record = json.loads(path.read_text())
    del record["sizes"]["tiny"]["phases"]["shortgpt"]["estimate_seconds"]
    path.write_text(json.dumps(record))
    bench(*common, "--sizes", "tiny", "--time-estimates")
    shortgpt = json.loads(path.read_text())["sizes"]["tiny"]["phases"]["shortgpt"]
    assert 0 < shortgpt["estimate_seconds"][0] <= shortgpt["estimate_seconds"][1]
    assert "--time-estimates" in shortgpt["estimate_timed"]["command"]
    assert "afterwards, by `python bench/scale/run.py" in bench("--show", path).stdout


def flops_by_hand(config: dict, seqlen: int, pool: int, firsts: list[int]) -> float:
    """FLOPs per candidate-window of a Llama config, counted from its numbers: each candidate runs the blocks
    after its own (attention at even block indices) and the LM head."""
    d, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    dh, blocks = d // heads, 2 * config["num_hidden_layers"]
    attn = 2 * seqlen * (2 * d * heads * dh + 2 * d * kv * dh) + 4 * heads * dh * seqlen * (seqlen + 1) / 2
    mlp = 2 * seqlen * 3 * d * config["intermediate_size"]
    head = 2 * (seqlen - 1) * d * config["vocab_size"]
    unit = blocks // pool
    runs = [sum(mlp if b % 2 else attn for b in range(first + unit, blocks)) + head for first in firsts]
    return sum(runs) / len(runs)


def test_the_summary_measures_growth_against_the_smallest_size_of_the_same_precision(tmp_path):
    configs = tmp_path / "configs"
    shapes = {"a": TINY, "b": {**TINY, "hidden_size": 128, "num_hidden_layers": 4}}
    for name, config in shapes.items():
        (configs / name).mkdir(parents=True)
        (configs / name / "config.json").write_text(json.dumps(config))

    def size(params, dtype, seconds, pool):
        phase = {"cpu_per_candidate_window": seconds, "model_per_candidate_window": [seconds, seconds],
                 "peak_rss": 1, "estimate_needed": 1, "estimate_peak": 1, "step": [seconds, seconds],
                 "evaluated_windows": 1, "candidates": 2, "pool": pool}
        return {"params": params, "status": "done", "dtype": dtype, "seqlen": 128, "phases": {"blockpruner racing": phase}}

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"sizes": {"a": size(100, "fp32", 1.0, 6), "b": size(300, "fp32", 2.5, 8),
                                          "a:bf16": size(1000, "bf16", 4.0, 6), "d": size(2000, "bf16", 10.0, 6)}}))
    rows = {line.split(" | ")[0].strip("| "): line
            for line in bench("--summary", path, "--configs", configs).stdout.splitlines()}
    # b's 2 candidates of 8 blocks are its first and last; a's of 6 the same
    work = flops_by_hand(shapes["b"], 128, 8, [0, 7]) / flops_by_hand(TINY, 128, 6, [0, 5])
    assert f"2.50x for 3.00x parameters, {work:.2f}x FLOPs (from 100 in fp32)" in rows["b"]
    # bf16's growth is read from the smallest bf16 size, never from an fp32 one (a config run in a chosen
    # precision, `<size>:<dtype>`, is counted from its config); no config, no FLOPs
    assert "1.00x for 1.00x parameters, 1.00x FLOPs (from 1,000 in bf16)" in rows["a:bf16"]
    assert "2.50x for 2.00x parameters (from 1,000 in bf16)" in rows["d"]
    bench("--figure", path)
    assert path.with_suffix(".png").stat().st_size > 0


def test_the_summary_fits_a_line_in_the_parameters_from_three_sizes():
    sys.path.insert(0, str(RUN.parent))
    import run

    line = [(100, 1.0 + 0.02 * 100, "a"), (400, 1.0 + 0.02 * 400, "b"), (1000, 1.0 + 0.02 * 1000, "c")]
    said = run.line_in_parameters("fp32", line)
    assert "a line in the parameters, 1.00 s + 20000000.00 s per billion, within " in said
    assert "within +0%" in said or "within -0%" in said
    # a fixed cost makes the proportion undershoot the smallest size: 3 s where 0.02 x 100 would be 2
    assert "off by up to -" in said and "at a." in said
    assert run.line_in_parameters("fp32", line[:2]) is None  # two sizes fix any line


def test_a_chosen_precision_is_recorded_apart_and_skipped_with_its_reason(tmp_path):
    configs, results = tmp_path / "configs", tmp_path / "results"
    (configs / "tiny").mkdir(parents=True)
    (configs / "tiny" / "config.json").write_text(json.dumps(TINY))
    bench("--configs", configs, "--results", results, "--work", tmp_path, "--seqlen", 32, "--dtype", "bf16",
          "--memory", 0.001)
    [path] = results.glob("*.json")
    sizes = json.loads(path.read_text())["sizes"]
    assert list(sizes) == ["tiny:bf16"] and sizes["tiny:bf16"]["status"] == "skipped"
    assert "fp32" not in sizes["tiny:bf16"]["reason"]
    assert ("bf16 needs" in sizes["tiny:bf16"]["reason"]) != ("no native bf16" in sizes["tiny:bf16"]["reason"])


def test_a_one_shot_pass_left_out_or_refused_leaves_the_size_recorded(tmp_path):
    configs, results = tmp_path / "configs", tmp_path / "results"
    (configs / "tiny").mkdir(parents=True)
    (configs / "tiny" / "config.json").write_text(json.dumps(TINY))
    bench("--configs", configs, "--results", results, "--work", tmp_path, "--seqlen", 32, "--candidates", 2,
          "--exhaustive-up-to", 0, "--one-shots", "shortgpt")
    [path] = results.glob("*.json")
    tiny = json.loads(path.read_text())["sizes"]["tiny"]
    assert tiny["status"] == "done" and "shortgpt" in tiny["phases"] and "llm-bip" not in tiny["phases"]
    assert tiny["not_run"] == {"llm-bip": "left out (--one-shots)"}
    assert "llm-bip not run: left out (--one-shots)" in bench("--show", path).stdout

    # the pass left out, added later to the same record: the other phases unchanged, the pass's own command
    bench("--configs", configs, "--results", results, "--work", tmp_path, "--sizes", "tiny", "--one-shots", "llm-bip",
          "--add-one-shots", "--note", "added later")
    after = json.loads(path.read_text())["sizes"]["tiny"]
    assert after["not_run"] == {} and after["phases"]["llm-bip"]["peak_rss"] > 0
    assert {k: v for k, v in after["phases"].items() if k != "llm-bip"} == tiny["phases"]
    assert "--add-one-shots" in after["phases"]["llm-bip"]["added"]["command"]
    shown = bench("--show", path).stdout
    assert "| llm-bip |" in shown and "llm-bip added by `python bench/scale/run.py" in shown and "added later" in shown
    assert not list(tmp_path.glob("scale-tiny-*")), "the size's checkpoint is left behind"

    # the steps measured again alone (--again, no one-shot pass): the earlier passes are kept, each with the
    # command that ran it; the steps are new (their own process)
    bench("--configs", configs, "--results", results, "--work", tmp_path, "--sizes", "tiny", "--seqlen", 32,
          "--candidates", 2, "--exhaustive-up-to", 0, "--one-shots", "", "--again")
    again = json.loads(path.read_text())["sizes"]["tiny"]
    assert again["pid"] != after["pid"] and again["not_run"] == {} and again["commit"]
    assert again["phases"]["llm-bip"] == after["phases"]["llm-bip"]
    assert {k: v for k, v in again["phases"]["shortgpt"].items() if k != "added"} == after["phases"]["shortgpt"]
    assert again["phases"]["shortgpt"]["added"]["command"] == after["command"]
