"""bench/width/table.py: width rows from a `blockprune compare` folder, depth rows from another one only where
that one was made at the same ratio and evaluated alike, cost figures where `blockprune eval` wrote them, and
LLM-BIP against the best published baseline."""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import bench_script

from blockprune import compare as cmp
from blockprune import machine
from blockprune.api import PruneOptions
from test_compare import FakeEvaluator

ALL = ("wikitext2", "ptb") + cmp.ZERO_SHOT


@pytest.fixture(scope="module")
def table():
    return bench_script("bench/width/table.py")


class Evaluator(FakeEvaluator):
    """FakeEvaluator with PTB and per-task standard errors, as eval.json holds them."""

    def __call__(self, target, tasks, out):
        rec = super().__call__(target, tasks, out)
        rec["perplexity"].update({t: {"ppl": 20.0 + len(self.calls)} for t in tasks if t == "ptb"})
        for scores in rec["zero_shot"].values():
            scores.update({f"{m}_stderr": 0.01 for m in list(scores)})
        rec["machines"] = [{"measured": list(tasks), **machine.describe()}]
        return rec


def run(model, out, calib, methods, ratio=0.2, limit=3):
    opts = PruneOptions(calibration=calib, nsamples=8, seqlen=32, scorer="plain")
    return cmp.compare(model, out, ratio=ratio, methods=methods, options=opts, tasks=ALL, evaluator=Evaluator(),
                       eval_settings={"limit": limit}, progress=False)


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(("the cat sat on the mat and the model pruned a block of attention " * 3)[:200])
    return str(p)


def test_one_table_of_width_and_matching_depth_rows(table, tiny_checkpoint, calib, tmp_path, capsys):
    width, depth, elsewhere = tmp_path / "width", tmp_path / "depth", tmp_path / "depth-r30"
    run(tiny_checkpoint, width, calib, "llm-bip,llm-bip:global,wanda-sp,flap:global,flap-nobias:global")
    run(tiny_checkpoint, depth, calib, "shortgpt,layer-ppl,blockpruner-oneshot")
    run(tiny_checkpoint, elsewhere, calib, "shortgpt", ratio=0.3)
    # a cost record as `blockprune eval` writes it, for one row
    (width / "cost" / "wanda-sp").mkdir(parents=True)
    (width / "cost" / "wanda-sp" / "eval.json").write_text(json.dumps({"cost": {
        "params": 30000, "kv_cache_bytes_per_token": 2048, "latency": {"tokens_per_s": 123.4, "caveat": None}}}))

    table.main([str(width), str(depth)])
    printed = capsys.readouterr().out
    rows = json.loads((width / "table.json").read_text())["rows"]
    assert [(r["method"], r["kind"]) for r in rows] == [
        ("dense", "dense"), ("llm-bip", "width"), ("llm-bip:global", "width"), ("wanda-sp", "width"),
        ("flap:global", "width"), ("flap-nobias:global", "width"), ("layer-ppl", "depth"), ("shortgpt", "depth")]
    by = {r["method"]: r for r in rows}
    assert by["wanda-sp"]["kv_cache_bytes_per_token"] == 2048 and by["llm-bip"]["kv_cache_bytes_per_token"] is None
    assert by["wanda-sp"]["calibration"]["seqlen"] == 32 and by["shortgpt"]["ratio"] > 0
    assert by["llm-bip"]["average_se"] == pytest.approx(0.01 * 5 ** 0.5 / 5)
    assert "| wanda-sp | width |" in printed and "2.0 KiB" in printed and "123.4" in printed
    assert "| blockpruner-oneshot |" not in printed  # not one of the depth rows the table shows
    assert "llm-bip vs the best published baseline on WikiText-2" in printed
    assert "on the zero-shot average" in printed and "s.e. of the difference" in printed
    # each row names its machine; the cost record written by hand above has none
    here = machine.summary(machine.describe(), load=False)
    assert (f"Machine: {here}: dense, llm-bip, llm-bip:global, wanda-sp, flap:global, flap-nobias:global, layer-ppl, "
            "shortgpt") in printed.splitlines() and "Machine: not recorded: wanda-sp" in printed.splitlines()
    table.main(["--depth-folders", str(width), str(depth)])
    assert capsys.readouterr().out.split() == [str(depth / "layer-ppl"), str(depth / "shortgpt")]

    # depth rows made at another ratio, or evaluated with other settings, are left out, and the table says why
    table.main([str(width), str(elsewhere)])
    printed = capsys.readouterr().out
    assert "| shortgpt |" not in printed and "no depth rows" in printed and "ratio of 0.3" in printed
    other = tmp_path / "depth-limit5"
    run(tiny_checkpoint, other, calib, "shortgpt", limit=5)
    table.main([str(width), str(other)])
    assert "| shortgpt |" not in capsys.readouterr().out


def test_depth_sh_evaluates_the_finished_depth_searches_with_the_width_runs_settings(tmp_path):
    """bench/width/depth.sh copies SRC's finished greedy searches without their evaluation, leaves out an
    unfinished one, takes OUT's dense evaluation, and runs one `compare` with OUT's ratio and evaluation
    settings (here `blockprune` is a stub that logs its arguments)."""
    out, src, depth = tmp_path / "width", tmp_path / "src", tmp_path / "depth"
    settings = {"seqlen": 2048, "max_windows": 8, "limit": 100, "num_fewshot": 0}
    (out / "dense").mkdir(parents=True)
    (out / "dense" / "eval.json").write_text(json.dumps({"settings": settings, "perplexity": {}}))
    (out / "llm-bip").mkdir()
    (out / "llm-bip" / "plan.json").write_text(json.dumps({"status": "done", "options": {"ratio": 0.1}}))
    for m, status in (("layer-ppl", "done"), ("blockpruner-joint", "done"), ("blockpruner", "running")):
        (src / m).mkdir(parents=True)
        for f in ("plan.json", "compare.json", "eval.json"):
            (src / m / f).write_text(json.dumps({"status": status, "file": f}))
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "blockprune").write_text(f'#!/bin/sh\necho "blockprune $*" >> "{log}"\n')
    (bin_dir / "blockprune").chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "bench" / "width" / "depth.sh"
    proc = subprocess.run(["bash", str(script), str(out), str(src), str(depth)], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in depth.iterdir()) == ["blockpruner-joint", "dense", "layer-ppl"]
    assert sorted(p.name for p in (depth / "layer-ppl").iterdir()) == ["compare.json", "plan.json"]
    assert json.loads((depth / "dense" / "eval.json").read_text())["settings"] == settings
    call, = log.read_text().splitlines()
    args = call.split()
    opt = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i].startswith("--")}
    assert args[:2] == ["blockprune", "compare"]
    assert opt["--ratio"] == "0.1" and opt["--max-windows"] == "8" and opt["--limit"] == "100"
    assert opt["--eval-seqlen"] == "2048" and opt["--out"] == str(depth)
    assert opt["--methods"].split(",") == ["blockpruner-joint", "layer-ppl", "shortgpt", "relative-magnitude"]
