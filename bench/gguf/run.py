"""llama.cpp: dense SmolLM2-135M against its 20% pruned models, each written by `--format gguf` and run in
llama.cpp (llama-cpp-python): file size, prompt-processing and generation speed, and WikiText-2 perplexity
through llama.cpp against transformers' for the same model.

Models: the dense one; the paper-calibration plans of `layer-ppl` and `blockpruner` at 20%
(bench/compare/smollm2-r20-paper/<method>/plan.json, read only); an LLM-BIP plan at 20% made here with
`blockprune prune --model smollm2-135m --method llm-bip --ratio 0.2 --data-dir ../shared/data --no-export
--out bench/gguf/llm-bip-r20` (the default calibration: 256 Alpaca rows in 2048-token windows).

Speed, per model, outtype (f16, q8_0) and thread count (--threads, 1 and 2 by default): prompt processing is one 512-token batch into
an empty context (tokens/s; logits of the last token only, as llama-bench does); generation is 128 tokens
decoded one at a time after a 32-token prompt, greedy (tokens/s). Each figure: the best and the median of
--runs runs after a warm-up, the models interleaved run by run so that other jobs on the machine hit them
alike. Perplexity: the first --ppl-windows windows of 2048 tokens of the WikiText-2 test text (as
`blockprune eval` cuts them), llama.cpp in f32 and q8_0 against transformers in fp32 (1 torch thread).

    python bench/gguf/run.py [--runs 3] [--ppl-windows 4] [--ppl-models dense] [--data-dir ../shared/data]
                             [--note "two other one-thread jobs were running"]

Writes bench/gguf/results/<machine tag>.json and .md (blockprune.machine: one file per kind of CPU).
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
from blockprune.evaluate.perplexity import test_perplexity
from blockprune.export import export
from blockprune.plan import Plan

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ppl-windows", type=int, default=4)
    ap.add_argument("--ppl-models", default="dense", help="comma list of models whose perplexity is compared")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--threads", default="1,2", help="llama.cpp thread counts to time, comma-separated (two "
                    "threads spin while they wait for each other: on a busy machine they mostly spin)")
    ap.add_argument("--note", default="", help="what else ran on the machine, for the results")
    args = ap.parse_args()
    torch.set_num_threads(1)

    net, tok = models.load("smollm2-135m")
    sha = models.fingerprint(net)
    plans = {name: Plan.load(p) for name, p in PLANS.items()}
    for name, plan in plans.items():
        if plan.model["sha256"] != sha:
            sys.exit(f"{PLANS[name]} was not made on this smollm2-135m")
    text = "\n\n".join(load_rows(str(Path(args.data_dir) / "calibration" / "alpaca_sample16.txt")))
    ids = tok(text).input_ids
    ppl_models = args.ppl_models.split(",")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[tuple[str, str], Path] = {}
        for name in ["dense", *plans]:
            for outtype in (*OUTTYPES, *(("f32",) if name in ppl_models else ())):
                path = Path(tmp) / f"{name}-{outtype}.gguf"
                if name == "dense":
                    export(net, frozenset(), path, fmt="gguf", tokenizer=tok, options={"outtype": outtype},
                           meta={"method": "dense"})
                else:
                    plans[name].export(net, path, fmt="gguf", tokenizer=tok, options={"outtype": outtype})
                files[name, outtype] = path
            plan = plans.get(name)
            rows[name] = {"ratio": 0.0 if plan is None else plan.outcome.ratio,
                          "removed": [] if plan is None else plan.outcome.removed,
                          "bytes": {o: files[name, o].stat().st_size for o in OUTTYPES}, "speed": {}}
        for name in rows:  # warm-up, then runs interleaved
            speed(files[name, "f16"], 1, ids)
        runs: dict[tuple, list[dict[str, float]]] = {}
        for run in range(args.runs):
            for threads in map(int, args.threads.split(",")):
                for outtype in OUTTYPES:
                    for name in rows:
                        runs.setdefault((name, outtype, threads), []).append(speed(files[name, outtype], threads, ids))
            print(f"speed run {run + 1}/{args.runs} done", file=sys.stderr)
        for (name, outtype, threads), got in runs.items():
            rows[name]["speed"][f"{outtype}/{threads}"] = {
                f"{key}_{how}": fn(r[key] for r in got) for key in got[0]
                for how, fn in (("best", max), ("median", lambda v: statistics.median(list(v))))}
        ppl = {}
        windows = load_windows("wikitext2", tok, SEQLEN, data_dir_=args.data_dir, max_windows=args.ppl_windows)
        for name in ppl_models:
            # a plan masks its removed blocks in place: on a copy, the base model stays whole
            model = net if name == "dense" else plans[name].apply(copy.deepcopy(net))
            hf = test_perplexity(model, tok, "wikitext2", seqlen=SEQLEN, max_windows=args.ppl_windows,
                                 data_dir=args.data_dir, progress=False)["ppl"]
            ppl[name] = {"transformers_fp32": hf, **{f"llama.cpp_{o}": llama_cpp_ppl(files[name, o], windows.ids)
                                                     for o in ("f32", "q8_0")}}
            print(f"perplexity {name} done", file=sys.stderr)
    import llama_cpp

    result = {"command": shlex.join(["python", "bench/gguf/run.py", *sys.argv[1:]]), "machine": machine.describe(),
              "note": args.note, "llama_cpp_python": llama_cpp.__version__, "runs": args.runs,
              "prompt_tokens": PROMPT_TOKENS, "gen_tokens": GEN_TOKENS, "ppl_windows": args.ppl_windows,
              "ppl_seqlen": SEQLEN, "plans": {k: str(v.relative_to(ROOT)) for k, v in PLANS.items()},
              "models": rows, "perplexity": ppl}
    table = markdown(result)
    print(table)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{machine.tag()}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{machine.tag()}.md").write_text(table)


def markdown(r: dict) -> str:
    m = r["machine"]
    dense = r["models"]["dense"]
    lines = ["## llama.cpp: dense against 20% pruned SmolLM2-135M", "",
             f"llama-cpp-python {r['llama_cpp_python']} on {m['cpu']['model']} ({m['cpu']['cores']} cores, "
             f"{', '.join(m['cpu']['flags'])}); load average at the end {m['load_average']}. {r['note']}", "",
             f"Prompt processing: {r['prompt_tokens']} tokens in one batch; generation: {r['gen_tokens']} tokens "
             f"one at a time. Tokens/s by CPU time (the work; for 1 thread, the speed with a core to itself) and by "
             f"wall time (what this shared machine gave), best of {r['runs']} runs; x = against dense in the same "
             "outtype and threads.", "",
             "| model | removed | ratio | outtype | file | threads | prompt tok/CPU-s | x | generate tok/CPU-s | x "
             "| prompt tok/s wall | x | generate tok/s wall | x |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in r["models"].items():
        for key, s in row["speed"].items():
            outtype, threads = key.split("/")
            d = dense["speed"][key]
            cells = " | ".join(f"{s[k + '_best']:.0f} | {s[k + '_best'] / d[k + '_best']:.2f}"
                               for k in ("pp_cpu", "tg_cpu", "pp_wall", "tg_wall"))
            lines.append(f"| {name} | {len(row['removed']) or '-'} | {row['ratio']:.1%} | {outtype} "
                         f"| {row['bytes'][outtype] / 2**20:.1f} MiB | {threads} | {cells} |")
    lines += ["", f"WikiText-2 test perplexity, first {r['ppl_windows']} windows of {r['ppl_seqlen']} tokens:", "",
              "| model | transformers fp32 | llama.cpp f32 | diff | llama.cpp q8_0 | diff |", "|---|---|---|---|---|---|"]
    for name, p in r["perplexity"].items():
        hf = p["transformers_fp32"]
        lines.append(f"| {name} | {hf:.3f} | {p['llama.cpp_f32']:.3f} | {p['llama.cpp_f32'] / hf - 1:+.3%} "
                     f"| {p['llama.cpp_q8_0']:.3f} | {p['llama.cpp_q8_0'] / hf - 1:+.3%} |")
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
