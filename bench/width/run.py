"""Width pruning of SmolLM2-135M at 20% of all parameters: LLM-BIP against its two baselines.

    OMP_NUM_THREADS=1 python bench/width/run.py --data-dir ../shared/data --out bench/width/results

For each allocation (uniform: the same share in every pruned layer; global: one ranking by score per
parameter) and score (llm-bip, local = activation x weight without the propagation factor, magnitude),
the model is width-pruned (layers 1..28; the first and last stay dense; whole KV groups), exported
(physically narrower, remote-code since the dense end layers differ), reloaded from disk, checked
against the in-memory model, and evaluated with blockprune.evaluate: WikiText-2 and PTB perplexity on
the first QUICK_WINDOWS 2048-token windows, the five zero-shot tasks on the first QUICK_DOCS documents
(the standard quick subset), and greedy generation latency against the dense model (rounds
interleaved across models, as the CPU is shared). Each finished piece is saved to OUT/results.json;
re-running resumes. OUT/summary.md is the table for bench/RESULTS.md."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from blockprune import atomic, models
from blockprune.data import load_windows
from blockprune.evaluate import QUICK_DOCS, QUICK_WINDOWS, ZERO_SHOT, average
from blockprune.evaluate.cost import generation_latency
from blockprune.evaluate.harness import harness_model, run_tasks, task_scores, task_specs
from blockprune.evaluate.perplexity import test_perplexity
from blockprune.export import export_width as export
from blockprune.export import load
from blockprune.models import count_params
from blockprune.view import BlockView
from blockprune.width import WidthOptions, prune_width, record, widths

SCORES = ("llm-bip", "local", "magnitude")
ALLOCATIONS = ("uniform", "global")


def kv_bytes_per_token(model) -> int:
    """KV cache growth per token from the actual k_proj widths (the remote-code config keeps dense counts)."""
    return sum(2 * w["kv"] * model.model.layers[i].self_attn.head_dim * 4
               for i, w in enumerate(widths(model)) if w["kv"])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="bench/width/results")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--calib-windows", type=int, default=8, help="Alpaca calibration windows of 2048 tokens")
    ap.add_argument("--ckpt-dir", default=None, help="where the pruned checkpoints go (default: a temp folder)")
    ap.add_argument("--ptb-windows", type=int, default=QUICK_WINDOWS)
    ap.add_argument("--skip-zero-shot", action="store_true")
    ap.add_argument("--latency-rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    out = Path(args.out)
    path = out / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["settings"] = ({"ratio": args.ratio, "calibration": f"alpaca, {args.calib_windows} x 2048 tokens "
                                "(nsamples=256, seed=42)", "layers": "1:-1", "gqa": "groups",
                                "wikitext2_windows": QUICK_WINDOWS, "ptb_windows": args.ptb_windows,
                                "zero_shot_docs": None if args.skip_zero_shot else QUICK_DOCS,
                                "threads": torch.get_num_threads()})
    res.setdefault("models", {})

    def save() -> None:
        atomic.write_json(path, res)

    ckpts = Path(args.ckpt_dir or tempfile.mkdtemp(prefix="width-bench-"))
    net, tok = models.load("smollm2-135m")
    view = BlockView(net)
    calib = load_windows("alpaca", tok, 2048, nsamples=256, seed=42, data_dir_=args.data_dir,
                         max_windows=args.calib_windows)
    subjects = {"dense": net}
    for allocation in ALLOCATIONS:
        for score in SCORES:
            name = f"{allocation}/{score}"
            entry = res["models"].setdefault(name, {})
            ck = ckpts / name.replace("/", "-")
            if not (ck / "config.json").exists():
                t0 = time.perf_counter()
                opts = WidthOptions(score=score, allocation=allocation)
                r = prune_width(view, calib, args.ratio, opts)
                entry["prune_seconds"] = round(time.perf_counter() - t0, 1)
                rec = record(r, opts)
                entry["removed_ratio"] = rec["ratio"]
                entry["kept"] = [{k: d[k] and len(d[k]) for k in ("kept_heads", "kept_kv", "kept_channels")}
                                 for d in rec["layers"]]
                export(r.model, ck, meta={"method": score, "base_model": "smollm2-135m"}, tokenizer=tok)
                back = load(ck)
                ids = calib.ids[:1, :256]
                with torch.no_grad():
                    entry["reload_max_abs_logit_diff"] = float((back(ids).logits - r.model(ids).logits).abs().max())
                entry["format"] = json.loads((ck / "config.json").read_text())["blockprune"]["format"]
                save()
                log(f"{name}: removed {rec['ratio']:.4f}, reload diff {entry['reload_max_abs_logit_diff']:.2e}")
            subjects[name] = load(ck)
    res["models"].setdefault("dense", {})

    # uniform allocation: llm-bip's factor is one number per layer, so it selects what `local` selects;
    # a model identical to one already listed is evaluated once and its figures shared
    seen: dict[str, str] = {}
    for name, model in list(subjects.items()):
        sha = models.fingerprint(model)
        if sha in seen:
            res["models"][name]["same_model_as"] = seen[sha]
            del subjects[name]
        seen.setdefault(sha, name)
    save()

    for name, model in subjects.items():
        entry = res["models"][name]
        entry["params"] = count_params(model)
        entry["kv_cache_bytes_per_token"] = kv_bytes_per_token(model)
        for source, n in (("wikitext2", QUICK_WINDOWS), ("ptb", args.ptb_windows)):
            if source not in entry:
                entry[source] = test_perplexity(model, tok, source, max_windows=n, data_dir=args.data_dir,
                                                progress=False)["ppl"]
                save()
                log(f"{name}: {source} ppl {entry[source]:.3f}")
    if not args.skip_zero_shot:
        for name, model in subjects.items():
            entry = res["models"][name]
            zs = entry.setdefault("zero_shot", {})
            lm = None
            for task in ZERO_SHOT:
                if task in zs:
                    continue
                lm = lm or harness_model(model, tok, 16)
                specs, _ = task_specs([task], args.data_dir)
                zs[task] = task_scores(run_tasks(lm, specs, limit=QUICK_DOCS), task)
                entry["average"] = average(zs)
                save()
                log(f"{name}: {task} {zs[task].get('acc_norm', zs[task].get('acc')):.4f}")
    if "latency" not in res:
        torch.set_num_threads(1)  # one thread: less noise from the other jobs on a shared CPU
        times: dict[str, list[float]] = {n: [] for n in subjects}
        for _ in range(args.latency_rounds):  # interleaved rounds: each model sees the same machine load
            for name, model in subjects.items():
                lat = generation_latency(model, tok, new_tokens=args.new_tokens, repeats=1, warmup=1, progress=False)
                times[name].append(lat["mean_s"])
        res["latency"] = {"new_tokens": args.new_tokens, "prompt_tokens": lat["prompt_tokens"], "threads": 1,
                          "rounds": args.latency_rounds,
                          "median_s": {n: statistics.median(t) for n, t in times.items()}, "all_s": times}
        save()
    atomic.write_text(out / "summary.md", summary(res))
    print((out / "summary.md").read_text())


def summary(res: dict) -> str:
    lat = res.get("latency", {}).get("median_s", {})
    dense_lat = lat.get("dense")
    rows = ["| model | removed | params | WikiText-2 ppl | PTB ppl | 5-task avg (acc_norm where reported) | "
            "piqa | winogrande | hellaswag | arc_e | arc_c | generation s (speed-up) | KV bytes/token |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in sorted(res["models"].items(), key=lambda kv: kv[0] != "dense"):
        same = e.get("same_model_as")
        e = {**res["models"][same], **e} if same else e
        name = f"{name} (= {same})" if same else name
        zs = e.get("zero_shot", {})

        def acc(t):
            s = zs.get(t)
            return f"{s.get('acc_norm', s.get('acc')):.3f}" if s else "-"
        avg = e.get("average")
        avg_s = f"{avg['value']:.3f}" if avg else "-"
        t = lat.get(same or name)
        t_s = f"{t:.2f} ({dense_lat / t:.2f}x)" if t and dense_lat else "-"
        rows.append(f"| {name} | {e.get('removed_ratio', 0):.1%} | {e.get('params', 0) / 1e6:.1f}M | "
                    f"{e.get('wikitext2', float('nan')):.2f} | {e.get('ptb', float('nan')):.2f} | {avg_s} | "
                    f"{acc('piqa')} | {acc('winogrande')} | {acc('hellaswag')} | {acc('arc_easy')} | "
                    f"{acc('arc_challenge')} | {t_s} | {e.get('kv_cache_bytes_per_token', 0)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
