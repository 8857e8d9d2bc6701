"""Inference: dense SmolLM2-135M vs its BlockPruner-pruned checkpoints, side by side in one run.

The removal set comes from a BlockPruner plan at about 20% of the parameters (by default
bench/inference/plan/plan.json, made by the command in bench/RESULTS.md). The pruned model is
exported through path 2 (remote-code) and path 3 (nemotron-nas) and each checkpoint is loaded back
from disk with `blockprune.load`, so what is timed is what a user gets. Measured per model:
parameters, checkpoint bytes (*.safetensors), KV-cache bytes per token (read off a real cache), the
latency to generate 128 tokens greedily with the KV cache, and prefill throughput on 512 tokens
(each the mean of --runs runs after one warm-up; models are interleaved run by run so that load from
other processes on the machine hits them alike).

    python bench/inference/run.py [--plan bench/inference/plan/plan.json] [--runs 5] [--threads 1]
                                  [--data-dir ../shared/data]
    python bench/inference/run.py --show bench/inference/results/2026-11-23-cpu-unrecorded.json

Writes bench/inference/results/<machine tag>.json (`blockprune.machine`: a run on another kind of CPU
writes beside the others) and prints bench/RESULTS.md's Inference section; `--show FILE` prints it again.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import blockprune
from blockprune import machine, models
from blockprune.data import load_rows
from blockprune.export import export
from blockprune.plan import Plan

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NEW_TOKENS, PREFILL = 128, 512


def checkpoint_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


@torch.no_grad()
def kv_bytes_per_token(model, ids: torch.Tensor) -> float:
    cache = model(ids, use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)
    return held / ids.shape[1]


@torch.no_grad()
def generate_seconds(model, prompt: torch.Tensor) -> float:
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                         use_cache=True, pad_token_id=0)
    seconds = time.perf_counter() - start
    assert out.shape[1] - prompt.shape[1] == NEW_TOKENS
    return seconds


@torch.no_grad()
def prefill_seconds(model, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(ids, use_cache=True)
    return time.perf_counter() - start


def text_ids(tok, data_dir: str | None) -> torch.Tensor:
    rows = load_rows("../shared/data/calibration/alpaca_sample16.txt" if data_dir is None
                     else str(Path(data_dir) / "calibration" / "alpaca_sample16.txt"))
    ids = tok("\n\n".join(rows), return_tensors="pt").input_ids
    if ids.shape[1] < PREFILL:
        sys.exit(f"the calibration text has {ids.shape[1]} tokens; the prefill needs {PREFILL}")
    return ids[:, :PREFILL]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(HERE / "plan" / "plan.json"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 keeps timings steady on a machine shared with other jobs")
    ap.add_argument("--plan-note", default="", help="how the plan was made, for RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print only; write no results file")
    ap.add_argument("--show", metavar="FILE", help="print the RESULTS.md section of a results file and exit")
    args = ap.parse_args()
    if args.show:
        print(markdown(json.loads(Path(args.show).read_text()), Path(args.show)), end="")
        return
    torch.set_num_threads(args.threads)

    plan = Plan.load(args.plan)
    net, tok = models.load(plan.model["source"])
    ids = text_ids(tok, args.data_dir)
    prompt = ids[:, :32]
    meta = {"method": plan.method, "base_model": plan.model["source"], "base_model_sha256": plan.model["sha256"]}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"dense": export(net, frozenset(), Path(tmp) / "dense", fmt="vanilla", meta=meta, tokenizer=tok),
                 "pruned (remote-code)": export(net, plan.removed_blocks, Path(tmp) / "rc", fmt="remote-code",
                                                meta=meta, tokenizer=tok),
                 "pruned (nemotron-nas)": export(net, plan.removed_blocks, Path(tmp) / "nas", fmt="nemotron-nas",
                                                 meta=meta, tokenizer=tok)}
        loaded = {name: blockprune.load(p) for name, p in paths.items()}
        rows = {name: {"params": models.count_params(m), "checkpoint_bytes": checkpoint_bytes(paths[name]),
                       "kv_bytes_per_token": kv_bytes_per_token(m, ids)} for name, m in loaded.items()}
    del net

    gen: dict[str, list[float]] = {n: [] for n in loaded}
    pre: dict[str, list[float]] = {n: [] for n in loaded}
    for run in range(args.runs + 1):  # run 0 warms up
        for name, model in loaded.items():
            g, p = generate_seconds(model, prompt), prefill_seconds(model, ids)
            if run:
                gen[name].append(g)
                pre[name].append(p)
        print(f"run {run}/{args.runs} done", file=sys.stderr)
    for name in loaded:
        rows[name].update(generate_128_s=statistics.mean(gen[name]), generate_128_sd=statistics.stdev(gen[name]),
                          generate_128_min_s=min(gen[name]),
                          prefill_512_tok_per_s=statistics.mean(PREFILL / s for s in pre[name]),
                          prefill_512_max_tok_per_s=PREFILL / min(pre[name]))

    dense = rows["dense"]
    keys = ("params", "checkpoint_bytes", "kv_bytes_per_token", "generate_128_s", "generate_128_min_s",
            "prefill_512_tok_per_s", "prefill_512_max_tok_per_s")
    for row in rows.values():
        row["vs_dense"] = {k: row[k] / dense[k] for k in keys}
    command = "python bench/inference/run.py " + " ".join(recorded_args(sys.argv[1:]))
    # the plan as the repository names it: the record reads the same on any machine
    result = {"command": command.strip(), "plan": os.path.relpath(Path(args.plan).resolve(), ROOT),
              "plan_note": args.plan_note,
              "removed": plan.removed,
              "removed_blocks": len(plan.removed_blocks), "plan_ratio": plan.steps[-1]["ratio"],
              "plan_ppl": {"dense": plan.dense["ppl"], "pruned": plan.steps[-1]["ppl"]},
              "calibration": {k: plan.calibration.get(k) for k in ("source", "seqlen", "windows")},
              "runs": args.runs, "new_tokens": NEW_TOKENS, "prefill_tokens": PREFILL, "threads": torch.get_num_threads(),
              "machine": machine.describe(), "models": rows}
    path = machine.results_file(HERE / "results")  # beside other machines' records, never over them
    print(markdown(result, path.relative_to(ROOT)), end="")
    if not args.no_write:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def recorded_args(argv: list[str]) -> list[str]:
    """The command line with --plan-note's prose elided (the section prints it as its Plan line)."""
    out: list[str] = []
    for a in argv:
        if out and out[-1] == "--plan-note":
            a = '"<the Plan text>"'
        elif a.startswith("--plan-note="):
            a = '--plan-note "<the Plan text>"'
        out.append(a)
    return out


def markdown(r: dict, path: Path) -> str:
    """bench/RESULTS.md's Inference section from one results file (`path`, as the section names it)."""
    lines = ["## Inference", "",
             f"Dense SmolLM2-135M vs the same model with a BlockPruner plan's {r['removed_blocks']} blocks removed "
             f"({r['plan_ratio']:.1%} of the parameters by the plan's count; calibration perplexity "
             f"{r['plan_ppl']['dense']:.2f} -> {r['plan_ppl']['pruned']:.2f} on {r['calibration']['windows']} windows "
             f"of {r['calibration']['seqlen']} tokens of `{Path(r['calibration']['source']).name}`). Each pruned "
             f"checkpoint is exported, then loaded back with `blockprune.load`. Generation: {r['new_tokens']} new "
             f"tokens, greedy, KV cache, 32-token prompt; prefill: one forward over {r['prefill_tokens']} tokens. "
             f"Means of {r['runs']} runs after a warm-up, models interleaved; fp32 on the CPU, machine: "
             f"{machine.summary(r['machine'])}, {r['threads']} threads, on a machine shared with other jobs "
             f"(timings are noisy; the ratios "
             f"are the figure to read).", "",
             f"Plan: {r['plan_note']} Removed (in order): {', '.join(r['removed'])}.", "",
             "| model | params | checkpoint | KV cache / token | generate 128 tok: mean ± sd | min "
             "| prefill 512 tok: mean | best |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        v = m["vs_dense"]
        lines.append(f"| {name} | {m['params'] / 1e6:.1f} M ({v['params']:.3f}) "
                     f"| {m['checkpoint_bytes'] / 2**20:.1f} MiB ({v['checkpoint_bytes']:.3f}) "
                     f"| {m['kv_bytes_per_token'] / 1024:.1f} KiB ({v['kv_bytes_per_token']:.3f}) "
                     f"| {m['generate_128_s']:.2f} s ± {m['generate_128_sd']:.2f} ({v['generate_128_s']:.3f}) "
                     f"| {m['generate_128_min_s']:.2f} s ({v['generate_128_min_s']:.3f}) "
                     f"| {m['prefill_512_tok_per_s']:.0f} tok/s ({v['prefill_512_tok_per_s']:.3f}) "
                     f"| {m['prefill_512_max_tok_per_s']:.0f} tok/s ({v['prefill_512_max_tok_per_s']:.3f}) |")
    lines += ["", "Ratios in parentheses are pruned / dense (for time, lower is faster; for throughput, higher). "
              "The fastest run (min / best) is the figure least disturbed by other jobs.",
              "", f"Command: `{r['command']}` (figures also in `{path}`; `python bench/inference/run.py --show "
              f"{path}` prints this section).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
