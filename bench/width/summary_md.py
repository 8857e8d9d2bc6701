"""Print the perplexity table of bench/RESULTS.md's "Width pruning" section from its committed record,
bench/width/results/results.json (written by the bench/width/run.py of commit e222fda, replaced since by
run.sh), and the machines it ran on (not recorded: the record predates machine records). The dense model's
widths are SmolLM2-135M's config (bench/scale/configs/smollm2-135m).

    python bench/width/summary_md.py"""
from __future__ import annotations

import json
from pathlib import Path

from blockprune import machine

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "width" / "results" / "results.json"
CONFIG = ROOT / "bench" / "scale" / "configs" / "smollm2-135m" / "config.json"
#: results.json's score names as `--method` names them
SCORES = {"llm-bip": "llm-bip", "local": "width-local", "magnitude": "width-magnitude"}


def count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"


def span(values: list[int], noun: str) -> str:
    """'6 heads' where every pruned layer kept the same number, else '3–9 heads'."""
    return count(min(values), noun) if min(values) == max(values) else f"{min(values)}–{max(values)} {noun}s"


def ppl(x: float) -> str:
    return f"{x:.2f}" if x < 1e6 else f"{x:,.0f}"


def main() -> None:
    res = json.loads(RESULTS.read_text(encoding="utf-8"))
    models, seconds = res["models"], res["latency"]["median_s"]
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    print("| allocation / score | params | WikiText-2 ppl (8 win.) | PTB ppl (4 win.) | 64-token generation, s "
          "(speed-up) | KV cache bytes/token | kept per pruned layer |\n|---|---|---|---|---|---|---|")
    dense_kept = [{"kept_heads": config["num_attention_heads"], "kept_kv": config["num_key_value_heads"],
                   "kept_channels": config["intermediate_size"]}]
    recorded = {}
    for name in ["dense"] + [f"{a}/{s}" for a in ("uniform", "global") for s in SCORES]:
        m = models[name]
        label = name if name == "dense" else f"{name.split('/')[0]} / {SCORES[name.split('/')[1]]}"
        if m.get("same_model_as"):
            print(f"| {label} | = {SCORES[m['same_model_as'].split('/')[1]]} (the same model, by construction: "
                  "see below) | | | | | |")
            continue
        kept = m.get("kept", dense_kept)
        widths = (f"{span([k['kept_heads'] for k in kept], 'head')} "
                  f"({span([k['kept_kv'] for k in kept], 'KV group')}), "
                  f"{span([k['kept_channels'] for k in kept], 'channel')}")
        print(f"| {label} | {m['params'] / 1e6:.1f}M | {ppl(m['wikitext2'])} | {ppl(m['ptb'])} | {seconds[name]:.2f} "
              f"({seconds['dense'] / seconds[name]:.2f}×) | {m['kv_cache_bytes_per_token']:,} | {widths} |")
        recorded[label] = [None]  # results.json holds no machine record
    print("\n" + "\n".join(machine.table_lines(recorded)))


if __name__ == "__main__":
    main()
