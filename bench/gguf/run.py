"""llama.cpp: dense SmolLM2-135M against its 20% pruned models, each written by `--format gguf` and run in
llama.cpp (llama-cpp-python): file size, prompt-processing and generation speed, and WikiText-2 perplexity
through llama.cpp against transformers' for the same model.

Models: the dense one; the paper-calibration plans of `layer-ppl` and `blockpruner` at 20%
(bench/compare/smollm2-r20-paper/<method>/plan.json, read only); an LLM-BIP plan at 20% made here with
`blockprune prune --model smollm2-135m --method llm-bip --ratio 0.2 --data-dir ../shared/data --no-export
--out bench/gguf/llm-bip-r20` (the default calibration: 256 Alpaca rows in 2048-token windows).

Two parts, run apart because they need different machines:
- `speed` (a timing: run it with the machine to itself, two llama.cpp threads need both cores), per model,
  outtype (f16, q8_0) and thread count (--threads, 1 and 2 by default): prompt processing is one 512-token
  batch into an empty context (tokens/s; logits of the last token only, as llama-bench does); generation is
  128 tokens decoded one at a time after a 32-token prompt, greedy (tokens/s). Each figure: the best and the
  median of --runs runs after a warm-up, the models interleaved run by run so that other jobs on the machine
  hit them alike.
- `perplexity` (not a timing: one thread, it can run beside other one-thread jobs): the first --windows
  windows of 2048 tokens of the WikiText-2 test text (as `blockprune eval` cuts them), llama.cpp in f32 and
  q8_0 against transformers in fp32 (1 torch thread), for each of --models. Resumable: each finished model is
  saved, and a re-run with the same windows keeps it.

    python bench/gguf/run.py speed [--runs 3] [--threads 1,2] [--note "the machine to itself"]
    python bench/gguf/run.py perplexity [--windows 16] [--models dense,layer-ppl,blockpruner,llm-bip]
    python bench/gguf/run.py --show bench/gguf/results/amd-epyc-avx2.json

Both write bench/gguf/results/<machine tag>.json and .md (blockprune.machine: one file per kind of CPU), each
part with its own command, note and machine record; a part run again replaces only that part.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from blockprune import machine, models
from blockprune.data import load_rows, load_windows
from blockprune.export import export
from blockprune.plan import Plan
from blockprune.view import BlockView
from blockprune.window_nll import perplexity

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLANS = {"layer-ppl": ROOT / "bench/compare/smollm2-r20-paper/layer-ppl/plan.json",
         "blockpruner": ROOT / "bench/compare/smollm2-r20-paper/blockpruner/plan.json",
         "llm-bip": HERE / "llm-bip-r20/plan.json"}
PROMPT_TOKENS, GEN_PROMPT, GEN_TOKENS, SEQLEN = 512, 32, 128, 2048
OUTTYPES = ("f16", "q8_0")


def open_model(path: Path, threads: int, n_ctx: int, logits_all: bool = False):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                 n_threads_batch=threads, logits_all=logits_all, verbose=False)


def next_token(llm) -> int:
    """The greedy next token: the argmax of the last evaluated token's logits (the only ones llama.cpp
    keeps without logits_all)."""
    import llama_cpp

    return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))))


def speed(path: Path, threads: int, ids: list[int]) -> dict[str, float]:
    """Tokens/s of one run, prompt (pp) and generation (tg), by wall time and by this process's CPU time.

    On a machine shared with jobs at a higher priority, wall time mostly measures waiting for a core; CPU
    time measures the work (for one thread, the speed with the core to itself; for two, llama.cpp's worker
    threads also spin while they wait for each other, which counts)."""
    llm = open_model(path, threads, PROMPT_TOKENS + GEN_TOKENS)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        llm.eval(ids[:PROMPT_TOKENS])
        pp = (PROMPT_TOKENS / (time.perf_counter() - wall), PROMPT_TOKENS / (time.process_time() - cpu))
        llm.reset()
        llm.eval(ids[:GEN_PROMPT])
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(GEN_TOKENS):
            llm.eval([next_token(llm)])
        tg = (GEN_TOKENS / (time.perf_counter() - wall), GEN_TOKENS / (time.process_time() - cpu))
    finally:
        llm.close()
    return {"pp_wall": pp[0], "pp_cpu": pp[1], "tg_wall": tg[0], "tg_cpu": tg[1]}


def llama_cpp_ppl(path: Path, windows: torch.Tensor) -> float:
    """exp of the mean over windows of each window's mean next-token NLL (as blockprune.window_nll)."""
    llm = open_model(path, 1, windows.shape[1], logits_all=True)
    nll = []
    try:
        for w in windows.tolist():
            llm.reset()
            llm.eval(w)
            logits = np.asarray(llm.scores[: len(w) - 1], dtype=np.float64)
            top = logits.max(axis=1, keepdims=True)
            logz = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
            nll.append(float(np.mean(logz - logits[np.arange(len(w) - 1), w[1:]])))
    finally:
        llm.close()
    return math.exp(statistics.fmean(nll))


def exported(net, tok, plans: dict[str, Plan], name: str, outtype: str, tmp: Path) -> Path:
    path = tmp / f"{name}-{outtype}.gguf"
    if not path.exists():
        if name == "dense":
            export(net, frozenset(), path, fmt="gguf", tokenizer=tok, options={"outtype": outtype},
                   meta={"method": "dense"})
        else:
            plans[name].export(net, path, fmt="gguf", tokenizer=tok, options={"outtype": outtype})
    return path


def speed_part(args, net, tok, plans: dict[str, Plan], tmp: Path) -> dict:
    text = "\n\n".join(load_rows(str(Path(args.data_dir) / "calibration" / "alpaca_sample16.txt")))
    ids = tok(text).input_ids
    names = ["dense", *plans]
    files = {(n, o): exported(net, tok, plans, n, o, tmp) for n in names for o in OUTTYPES}
    rows = {n: {"ratio": 0.0 if n == "dense" else plans[n].outcome.ratio,
                "removed": [] if n == "dense" else plans[n].outcome.removed,
                "bytes": {o: files[n, o].stat().st_size for o in OUTTYPES}, "speed": {}} for n in names}
    for name in names:  # warm-up, then runs interleaved
        speed(files[name, "f16"], 1, ids)
    runs: dict[tuple, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for threads in map(int, args.threads.split(",")):
            for outtype in OUTTYPES:
                for name in names:
                    runs.setdefault((name, outtype, threads), []).append(speed(files[name, outtype], threads, ids))
        print(f"speed run {run + 1}/{args.runs} done", file=sys.stderr)
    for (name, outtype, threads), got in runs.items():
        rows[name]["speed"][f"{outtype}/{threads}"] = {
            f"{key}_{how}": fn(r[key] for r in got) for key in got[0]
            for how, fn in (("best", max), ("median", lambda v: statistics.median(list(v))))}
    return {"runs": args.runs, "prompt_tokens": PROMPT_TOKENS, "gen_tokens": GEN_TOKENS, "models": rows}


def perplexity_part(args, net, tok, plans: dict[str, Plan], tmp: Path, saved: dict | None, save) -> dict:
    part = {"windows": args.windows, "seqlen": SEQLEN, "models": {}}
    if saved and (saved.get("windows"), saved.get("seqlen")) == (args.windows, SEQLEN):
        part["models"] = dict(saved.get("models", {}))
    windows = load_windows("wikitext2", tok, SEQLEN, data_dir_=args.data_dir, max_windows=args.windows)
    for name in args.models.split(","):
        if name in part["models"]:
            print(f"perplexity {name}: kept from the saved part", file=sys.stderr)
            continue
        # a plan masks its removed blocks in place: on a copy, the base model stays whole
        model = net if name == "dense" else plans[name].apply(copy.deepcopy(net))
        hf = perplexity(BlockView(model), windows)  # the windows llama.cpp gets, tokenized once
        part["models"][name] = {"transformers_fp32": hf, **{
            f"llama.cpp_{o}": llama_cpp_ppl(exported(net, tok, plans, name, o, tmp), windows.ids) for o in ("f32", "q8_0")}}
        save(part)
        print(f"perplexity {name} done", file=sys.stderr)
    return part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", choices=["speed", "perplexity"])
    ap.add_argument("--show", metavar="FILE", help="print a results file's tables and exit")
    ap.add_argument("--runs", type=int, default=3, help="speed: runs per figure")
    ap.add_argument("--threads", default="1,2", help="speed: llama.cpp thread counts to time, comma-separated "
                    "(two threads spin while they wait for each other: on a busy machine they mostly spin)")
    ap.add_argument("--windows", type=int, default=16, help="perplexity: WikiText-2 windows of 2048 tokens")
    ap.add_argument("--models", default=",".join(["dense", *PLANS]), help="perplexity: comma-separated models")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--note", default="", help="what else ran on the machine, for the results")
    args = ap.parse_args()
    if args.show:
        print(markdown(json.loads(Path(args.show).read_text())))
        return
    if args.part is None:
        ap.error("name a part: speed or perplexity (or --show FILE)")
    unknown = set(args.models.split(",")) - {"dense", *PLANS}
    if unknown:
        ap.error(f"--models: unknown {sorted(unknown)}; choose from {['dense', *PLANS]}")
    torch.set_num_threads(1)
    import llama_cpp

    net, tok = models.load("smollm2-135m")
    sha = models.fingerprint(net)
    plans = {name: Plan.load(p) for name, p in PLANS.items()}
    for name, plan in plans.items():
        if plan.model["sha256"] != sha:
            sys.exit(f"{PLANS[name]} was not made on this smollm2-135m")
    out = machine.results_file(HERE / "results")
    result = json.loads(out.read_text()) if out.exists() else {}
    command = shlex.join(["python", "bench/gguf/run.py", *sys.argv[1:]])

    def save(part: dict) -> None:
        result.update(llama_cpp_python=llama_cpp.__version__,
                      plans={k: str(v.relative_to(ROOT)) for k, v in PLANS.items()})
        result[args.part] = {"command": command, "machine": machine.describe(), "note": args.note, **part}
        machine.write_results(out.parent, result)
        out.with_suffix(".md").write_text(markdown(result))

    with tempfile.TemporaryDirectory() as tmp:
        if args.part == "speed":
            save(speed_part(args, net, tok, plans, Path(tmp)))
        else:
            perplexity_part(args, net, tok, plans, Path(tmp), result.get("perplexity"), save)
    print(markdown(result))


def markdown(r: dict) -> str:
    """The results file's tables: speed, then perplexity, each with its machine, note and command."""
    lines = ["## llama.cpp: dense against 20% pruned SmolLM2-135M", "", f"llama-cpp-python {r['llama_cpp_python']}.", ""]
    if "speed" in r:
        sp = r["speed"]
        dense = sp["models"]["dense"]
        lines += [f"Speed, on {machine.summary(sp['machine'])}. {sp['note']}", "",
                  f"Prompt processing: {sp['prompt_tokens']} tokens in one batch; generation: {sp['gen_tokens']} "
                  f"tokens one at a time. Tokens/s by CPU time (the work; for 1 thread, the speed with a core to "
                  f"itself) and by wall time, best of {sp['runs']} runs; x = against dense in the same outtype and "
                  "threads.", "",
                  "| model | removed | ratio | outtype | file | threads | prompt tok/CPU-s | x | generate tok/CPU-s | x "
                  "| prompt tok/s wall | x | generate tok/s wall | x |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, row in sp["models"].items():
            for key, got in row["speed"].items():
                outtype, threads = key.split("/")
                d = dense["speed"][key]
                cells = " | ".join(f"{got[k + '_best']:.0f} | {got[k + '_best'] / d[k + '_best']:.2f}"
                                   for k in ("pp_cpu", "tg_cpu", "pp_wall", "tg_wall"))
                lines.append(f"| {name} | {len(row['removed']) or '-'} | {row['ratio']:.1%} | {outtype} "
                             f"| {row['bytes'][outtype] / 2**20:.1f} MiB | {threads} | {cells} |")
        lines += ["", f"Command: `{sp['command']}`", ""]
    if "perplexity" in r:
        pp = r["perplexity"]
        lines += [f"WikiText-2 test perplexity, first {pp['windows']} windows of {pp['seqlen']} tokens, on "
                  f"{machine.summary(pp['machine'])}; llama.cpp with its default f16 KV cache. {pp['note']}", "",
                  "| model | transformers fp32 | llama.cpp f32 | diff | llama.cpp q8_0 | diff |", "|---|---|---|---|---|---|"]
        for name, got in pp["models"].items():
            hf = got["transformers_fp32"]
            lines.append(f"| {name} | {hf:.3f} | {got['llama.cpp_f32']:.3f} | {got['llama.cpp_f32'] / hf - 1:+.3%} "
                         f"| {got['llama.cpp_q8_0']:.3f} | {got['llama.cpp_q8_0'] / hf - 1:+.3%} |")
        lines += ["", f"Command: `{pp['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
