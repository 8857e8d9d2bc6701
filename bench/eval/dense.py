"""Dense SmolLM2-135M: WikiText-2 perplexity (2048-token windows) and the five zero-shot tasks on the
full sets, plus the standard quick subset, through blockprune's evaluation code.

    OMP_NUM_THREADS=1 nohup python bench/eval/dense.py --data-dir ../shared/data --out bench/eval/dense \
        > bench/eval/dense.log 2>&1 &

The full sets take hours on a small CPU, so the work is done in chunks (perplexity windows, documents
by their index) and every finished chunk is saved: this kind of machine's results file in `--out`
(`<machine tag>.json`, `blockprune.machine.results_file`) always holds the figures so far, with the machine
record of every invocation, and re-running the same command on the same kind of machine resumes
(`<machine tag>.state.json`); another kind of machine measures afresh, beside it, as its seconds and
latency differ. `results.json` and `state.json` are the 2026-11-23 run's, written before machine records. Per-document scores come from lm-eval's logged samples;
the full-set mean of them is lm-eval's own acc / acc_norm (its aggregation is the mean). The quick
subset's figures are the first QUICK_WINDOWS windows and first QUICK_DOCS documents of the same runs.

The reference model class is lm-eval's stock HFLM. `--shared-prompts` scores the chunks still to do with
blockprune's SharedPrefixHFLM instead (each prompt run once for all its choices); the class of every chunk
is recorded. `--check-shared TASK:N` first re-scores that task's first N finished documents with it and
prints how many per-document acc / acc_norm values equal the stored HFLM ones."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from blockprune import atomic, machine
from blockprune.data import load_windows
from blockprune.evaluate import QUICK_DOCS, QUICK_WINDOWS, ZERO_SHOT, average, load_subject
from blockprune.evaluate.cost import cost
from blockprune.evaluate.harness import harness_model, run_tasks, task_specs
from blockprune.window_nll import ppl_from_nll, window_nll
from blockprune.view import BlockView

# full sets cheapest first, so the most tasks complete in a given time; hellaswag (40k requests) last
FULL_ORDER = ("winogrande", "piqa", "arc_challenge", "arc_easy", "hellaswag")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="bench/eval/dense")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--chunk-docs", type=int, default=250)
    ap.add_argument("--chunk-windows", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shared-prompts", action="store_true")
    ap.add_argument("--check-shared", default=None, metavar="TASK:N")
    args = ap.parse_args()
    out = Path(args.out)
    state_path = machine.results_file(out, ".state.json")
    state = json.loads(state_path.read_text()) if state_path.exists() else {"nll": [], "docs": {}, "seconds": {}}
    state.setdefault("machines", []).append(machine.describe())  # each invocation's: load and threads vary

    def save() -> None:
        atomic.write_json(state_path, state)
        atomic.write_json(machine.results_file(out), summarize(state, args))

    subject = load_subject(args.model)
    model, tok = subject.model, subject.tokenizer
    if "cost" not in state:
        state["cost"] = cost(model, tok, subject.reference_params, repeats=3)
        save()

    windows = load_windows("wikitext2", tok, args.seqlen, data_dir_=args.data_dir)
    state["windows_total"] = len(windows)
    view = BlockView(model)
    lm = harness_model(model, tok, args.batch_size, shared_prompts=args.shared_prompts)
    state.setdefault("model_class", {})

    if args.check_shared:
        task, n = args.check_shared.split(":")
        specs, _ = task_specs([task], args.data_dir)
        r = run_tasks(harness_model(model, tok, args.batch_size, shared_prompts=True), specs,
                      samples={task: list(range(int(n)))}, log_samples=True)
        stored = state["docs"][task]
        same = {m: sum(s[m] == stored[m][str(s["doc_id"])] for s in r["samples"][task]) for m in ("acc", "acc_norm")
                if m in r["samples"][task][0]}
        state.setdefault("shared_prompt_checks", {})[task] = {"docs": int(n), "equal": same}
        print(f"{task}: SharedPrefixHFLM vs stored HFLM on the first {n} docs, equal per-document: {same}",
              file=sys.stderr, flush=True)
        save()

    def do_windows(upto: int) -> None:
        while len(state["nll"]) < upto:
            i, t0 = len(state["nll"]), time.time()
            part = type(windows)(windows.ids[i:min(upto, i + args.chunk_windows)], windows.source, windows.rows,
                                 windows.tokens, windows.seed)
            state["nll"] += [float(x) for x in window_nll(view, part)]
            state["seconds"]["wikitext2"] = state["seconds"].get("wikitext2", 0) + time.time() - t0
            print(f"wikitext2 {len(state['nll'])}/{len(windows)} windows", file=sys.stderr, flush=True)
            save()

    def do_task(task: str, upto: int | None) -> None:
        specs, _ = task_specs([task], args.data_dir)
        total = len(specs[0].eval_docs)
        docs = state["docs"].setdefault(task, {"total": total, "acc": {}, "acc_norm": {}})
        upto = total if upto is None else min(upto, total)
        while len(docs["acc"]) < upto:
            start, t0 = len(docs["acc"]), time.time()
            stop = min(upto, start + args.chunk_docs)
            r = run_tasks(lm, specs, samples={task: list(range(start, stop))}, log_samples=True)
            for s in r["samples"][task]:
                for m in ("acc", "acc_norm"):
                    if m in s:
                        docs[m][str(s["doc_id"])] = s[m]
            state["model_class"].setdefault(task, {})[f"{start}-{stop}"] = type(lm).__name__
            state["seconds"][task] = state["seconds"].get(task, 0) + time.time() - t0
            print(f"{task} {len(docs['acc'])}/{total} docs", file=sys.stderr, flush=True)
            save()
            specs, _ = task_specs([task], args.data_dir)  # a fresh task object: lm-eval keeps per-run state

    # the quick subset first (its figures land early), then the rest of every set
    do_windows(QUICK_WINDOWS)
    for task in ZERO_SHOT:
        do_task(task, QUICK_DOCS)
    do_task(FULL_ORDER[0], None)  # one full set that lands within an hour on a busy 2-core machine
    do_windows(len(windows))
    for task in FULL_ORDER:
        do_task(task, None)


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def summarize(state: dict, args) -> dict:
    def task_figures(limit: int | None) -> dict:
        out = {}
        for task, d in state["docs"].items():
            ids = [i for i in range(d["total"] if limit is None else min(limit, d["total"])) if str(i) in d["acc"]]
            if not ids:
                continue
            complete = len(ids) == (d["total"] if limit is None else min(limit, d["total"]))
            row = {"docs": len(ids), "complete": complete}
            for m in ("acc", "acc_norm"):
                if d[m]:
                    row[m], row[f"{m}_stderr"] = mean_and_stderr([d[m][str(i)] for i in ids])
            out[task] = row
        return out

    def complete_average(tasks: dict) -> dict | None:  # the paper's average, once all five tasks are complete
        return average(tasks) if all(t in tasks and tasks[t]["complete"] for t in ZERO_SHOT) else None

    nll = torch.tensor(state["nll"], dtype=torch.float64)
    full_tasks, quick_tasks = task_figures(None), task_figures(QUICK_DOCS)
    total_w = state.get("windows_total")
    return {
        "model": args.model, "seqlen": args.seqlen, "machines": state["machines"], "cost": state.get("cost"),
        "seconds": state["seconds"],
        "model_class": {"before the split was recorded": "HFLM", **state.get("model_class", {})},
        "shared_prompt_checks": state.get("shared_prompt_checks", {}),
        "windows_total": total_w, "totals": {t: d["total"] for t, d in state["docs"].items()},
        "full": {"wikitext2": {"ppl": ppl_from_nll(nll) if len(nll) else None, "windows": len(nll),
                               "complete": len(nll) == total_w},
                 "zero_shot": full_tasks, "average": complete_average(full_tasks)},
        "quick": {"definition": f"first {QUICK_WINDOWS} WikiText-2 windows, first {QUICK_DOCS} docs per task",
                  "wikitext2": {"ppl": ppl_from_nll(nll[:QUICK_WINDOWS]) if len(nll) >= QUICK_WINDOWS else None,
                                "windows": min(len(nll), QUICK_WINDOWS)},
                  "zero_shot": quick_tasks, "average": complete_average(quick_tasks)},
    }


if __name__ == "__main__":
    main()
