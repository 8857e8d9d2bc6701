"""One table of width and depth pruning at the same ratio (bench/width/run.sh): per row the ratio, calibration
perplexity (beside the dense model's on the same calibration), WikiText-2 and PTB perplexity, the five zero-shot
tasks, their average with its standard error, and where `blockprune eval` measured them (OUT/cost/<folder>)
the parameters, KV cache per token and generation speed; then whether LLM-BIP beats the best published width
baseline on WikiText-2, PTB and the average.

    python bench/width/table.py OUT [DEPTH]
    python bench/width/table.py --depth-folders OUT [DEPTH]   (the depth run folders the table shows, one a line)

Width rows are OUT's finished method folders; depth rows (layer-ppl, relative-magnitude, shortgpt, blockpruner,
blockpruner-joint) come from DEPTH (default bench/compare/smollm2-r20-paper) where its folders were pruned at
OUT's ratio from the same model and evaluated with OUT's settings (otherwise the table says why there are none). Every figure is
read from the folders' plan.json, eval.json and compare.json, as `blockprune compare` wrote them, and the
table names the machines each row came from (those files' and its cost evaluation's machine records; "not
recorded" where they hold none). Writes OUT/table.md and OUT/table.json and prints the table."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from blockprune import atomic, machine
from blockprune.compare import finished_rows, method_row
from blockprune.evaluate.table import ZERO_SHOT, task_metric
from blockprune.plan import Plan

DEPTH = Path("bench/compare/smollm2-r20-paper")
DEPTH_METHODS = ("layer-ppl", "relative-magnitude", "shortgpt", "blockpruner", "blockpruner-joint")
WIDTH_ORDER = ("llm-bip", "llm-bip:global", "width-local", "width-magnitude", "wanda-sp", "flap", "flap:global",
               "flap-nobias", "flap-nobias:global", "llm-pruner", "llm-pruner-vector", "llm-pruner-element2")
LLM_BIP = ("llm-bip", "llm-bip:global")
#: the published width baselines LLM-BIP claims to beat (flap-nobias is FLAP's ablation, width-local and
#: width-magnitude this project's own)
PUBLISHED = ("wanda-sp", "flap", "flap:global", "llm-pruner", "llm-pruner-vector", "llm-pruner-element2")
TASKS = ("wikitext2", "ptb") + ZERO_SHOT
NAMES = {"wikitext2": "WikiText-2", "ptb": "PTB", "piqa": "PIQA", "winogrande": "WinoGrande",
         "hellaswag": "HellaSwag", "arc_easy": "ARC-e", "arc_challenge": "ARC-c"}


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def eval_settings(out: Path) -> dict:
    """The evaluation settings of OUT (its dense model's evaluation, which every method's must share)."""
    dense = read(out / "dense" / "eval.json")
    if dense is None:
        raise SystemExit(f"{out}/dense/eval.json is missing: run bench/width/run.sh first")
    return {k: dense["settings"].get(k) for k in ("seqlen", "max_windows", "limit", "num_fewshot")}


def folder(label: str) -> str:
    return label.replace(":", "-")


def target(out: Path) -> tuple[float, str]:
    """OUT's target ratio and model, from its finished plans."""
    plans = [Plan.load(p) for p in sorted(out.iterdir()) if (p / "plan.json").exists()]
    if not plans:
        raise SystemExit(f"{out} holds no run yet")
    return plans[0].options["ratio"], plans[0].model["source"]


def depth_rows(out: Path, depth: Path, settings: dict) -> tuple[list[dict], str | None]:
    """DEPTH's rows of DEPTH_METHODS when made at OUT's ratio from its model and evaluated alike, else why not."""
    if not (depth / "dense").exists():
        return [], f"no depth rows: {depth} holds no comparison"
    ratio, model = target(out)
    rows, why = [], None
    for r in finished_rows(depth, TASKS, settings):
        if r["method"] not in DEPTH_METHODS:
            continue
        plan = Plan.load(depth / folder(r["method"]))
        if plan.options.get("ratio") != ratio or plan.model.get("source") != model:
            why = (f"no depth rows: {depth} was pruned at a ratio of {plan.options.get('ratio')} from "
                   f"{plan.model.get('source')} (this run: {ratio}, {model})")
            continue
        rows.append(r)
    if not rows and why is None:
        why = f"no depth rows: none of {', '.join(DEPTH_METHODS)} in {depth} is finished and evaluated with these settings"
    return sorted(rows, key=lambda r: DEPTH_METHODS.index(r["method"])), why


def average_se(ev: dict) -> float | None:
    """Standard error of the five-task average (tasks independent): sqrt(sum of squared task s.e.) / 5."""
    zs = ev.get("zero_shot", {})
    if not all(t in zs for t in ZERO_SHOT):
        return None
    ses = [zs[t].get(f"{task_metric(zs[t])}_stderr") for t in ZERO_SHOT]
    return None if None in ses else math.sqrt(sum(s * s for s in ses)) / len(ZERO_SHOT)


def decorate(row: dict, kind: str, run: Path | None, cost_dir: Path) -> dict:
    """A compare row with the table's other columns: kind, calibration, dense calibration ppl, average s.e., cost."""
    ev = read(run / "eval.json") if run else read(cost_dir.parent / "dense" / "eval.json")
    plan = Plan.load(run) if run else None
    cost = (read(cost_dir / (run.name if run else "dense") / "eval.json") or {}).get("cost")
    latency = (cost or {}).get("latency") or {}
    return {**row, "kind": kind, "folder": str(run) if run else None,
            "calibration": ({k: plan.calibration.get(k) for k in ("rows", "windows", "seqlen")} if plan else None),
            "dense_calibration_ppl": plan.dense.get("ppl") if plan else None,
            "average_se": average_se(ev or {}),
            "params": (cost or {}).get("params"), "kv_cache_bytes_per_token": (cost or {}).get("kv_cache_bytes_per_token"),
            "tokens_per_s": latency.get("tokens_per_s"), "latency_caveat": latency.get("caveat"),
            "latency_threads": latency.get("threads")}


def verdicts(rows: list[dict]) -> list[str]:
    """LLM-BIP against the best published width baseline on each of WikiText-2, PTB and the average."""
    by = {r["method"]: r for r in rows}
    base = [by[m] for m in PUBLISHED if m in by]
    lines = []
    for name in (m for m in LLM_BIP if m in by):
        me = by[name]
        if not base:
            lines.append(f"- {name}: no published width baseline finished yet")
            continue
        for t in ("wikitext2", "ptb"):
            have = [b for b in base if t in b["perplexity"]]
            if t not in me["perplexity"] or not have:
                continue
            best = min(have, key=lambda b: b["perplexity"][t])
            a, b = me["perplexity"][t], best["perplexity"][t]
            verdict = "lower (better)" if a < b else "higher (worse)" if a > b else "equal"
            lines.append(f"- {name} vs the best published baseline on {NAMES[t]} ({best['method']}): {a:.2f} vs "
                         f"{b:.2f}, {verdict}" + (f" by {abs(a - b):.2f}" if a != b else "")
                         + " (no standard error: the evaluation records no per-window losses)")
        have = [b for b in base if b["average"] is not None]
        if me["average"] is not None and have:
            best = max(have, key=lambda b: b["average"])
            d = me["average"] - best["average"]
            ses = (me["average_se"], best["average_se"])
            se = math.sqrt(sum(s * s for s in ses)) if None not in ses else None
            z = f", {d / se:+.1f} s.e." if se else ""
            lines.append(f"- {name} vs the best published baseline on the zero-shot average ({best['method']}): "
                         f"{100 * me['average']:.2f} vs {100 * best['average']:.2f}, {100 * d:+.2f} points"
                         + (f" ± {100 * se:.2f} (s.e. of the difference, tasks and the two models taken as "
                            f"independent{z})" if se else ""))
    return lines


def markdown(rows: list[dict], settings: dict, notes: list[str]) -> str:
    f = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
    head = (["Method", "Kind", "Calibration", "Ratio", "Calib. PPL (dense)"] + [NAMES[t] for t in TASKS]
            + ["Avg. ± s.e.", "Params", "KV cache / token", "Tokens/s", "Search (s)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cal = r["calibration"]
        calib = f"{cal['windows']} × {cal['seqlen']} ({cal['rows']} rows)" if cal else "–"
        cppl = (f"{r['calibration_ppl']:.2f} ({r['dense_calibration_ppl']:.2f})"
                if r["calibration_ppl"] is not None and r["dense_calibration_ppl"] is not None else "–")
        tasks = [f(r["perplexity"].get(t), ".2f") for t in ("wikitext2", "ptb")]
        tasks += [f(None if r["zero_shot"].get(t) is None else 100 * r["zero_shot"][t], ".2f") for t in ZERO_SHOT]
        avg = "–" if r["average"] is None else (f"{100 * r['average']:.2f}"
                                                + (f" ± {100 * r['average_se']:.2f}" if r["average_se"] else ""))
        kv = "–" if r["kv_cache_bytes_per_token"] is None else f"{r['kv_cache_bytes_per_token'] / 1024:.1f} KiB"
        speed = f(r["tokens_per_s"], ".1f") + ("*" if r["latency_caveat"] else "")
        params = ("–" if r["params"] is None else f"{r['params'] / 1e6:.1f}M" if r["params"] >= 1e6
                  else f"{r['params']:,}")
        lines.append("| " + " | ".join([r["method"], r["kind"], calib, f"{r['ratio']:.1%}", cppl, *tasks, avg, params,
                                        kv, speed, f(r["search_seconds"], ".0f")]) + " |")
    windows = "every window" if not settings["max_windows"] else f"the first {settings['max_windows']} windows"
    docs = "every document" if not settings["limit"] else f"the first {settings['limit']} documents of each task"
    notes = [f"Evaluation: perplexity in {settings['seqlen']}-token windows ({windows}), zero-shot on {docs}; task "
             f"columns are accuracy in % (acc_norm where the task reports it, acc otherwise), Avg. the five-task "
             f"average with its standard error (sqrt of the summed squared task s.e. / 5).",
             "Params, KV cache (fp32, per token of context) and tokens/s (greedy generation of 128 tokens with the "
             "KV cache, one thread; * measured under load or with a wide spread) from `blockprune eval`'s cost "
             "figures, where measured.", *notes]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def main(argv: list[str]) -> None:
    folders_only = argv[:1] == ["--depth-folders"]
    argv = argv[1:] if folders_only else argv
    if not 1 <= len(argv) <= 2:
        raise SystemExit(__doc__)
    out = Path(argv[0])
    depth = Path(argv[1]) if len(argv) > 1 else DEPTH
    settings = eval_settings(out)
    deep, why = depth_rows(out, depth, settings)
    if folders_only:
        print("\n".join(str(depth / folder(r["method"])) for r in deep))
        return
    cost_dir = out / "cost"
    width = [r for r in finished_rows(out, TASKS, settings)]
    width.sort(key=lambda r: (WIDTH_ORDER.index(r["method"]) if r["method"] in WIDTH_ORDER else len(WIDTH_ORDER),
                              r["method"]))
    dense = method_row("dense", None, read(out / "dense" / "eval.json"), None)
    rows = ([decorate(dense, "dense", None, cost_dir)]
            + [decorate(r, "width", out / folder(r["method"]), cost_dir) for r in width]
            + [decorate(r, "depth", depth / folder(r["method"]), cost_dir) for r in deep])
    unfinished = sorted(p.name for p in out.iterdir() if (p / "plan.json").exists()
                        and p.name not in {folder(r["method"]) for r in width})
    notes = ([why] if why else []) + ([f"Not finished yet (searched or evaluated): {', '.join(unfinished)}."]
                                      if unfinished else [])
    notes += ["", "LLM-BIP against the best published width baseline (Wanda-sp, FLAP, LLM-Pruner):", *verdicts(rows)]
    # the machines behind each row: its search and evaluation (its folder) and its cost figures (OUT/cost)
    runs = {"dense": out / "dense", **{r["method"]: Path(r["folder"]) for r in rows if r["folder"]}}
    notes += ["", *machine.table_lines({m: machine.folder_records(run) + machine.folder_records(cost_dir / run.name)
                                        for m, run in runs.items()})]
    md = markdown(rows, settings, notes)
    atomic.write_text(out / "table.md", md)
    atomic.write_json(out / "table.json", {"settings": settings, "depth": str(depth), "rows": rows, "notes": notes})
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
