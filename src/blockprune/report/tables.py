"""The report's tables: the Table-1-shaped comparison of every evaluated model (rendered by
`evaluate/table.py`), with each average as a share of the dense model's; cost figures; healing runs."""
from __future__ import annotations

from typing import Any

from ..evaluate import table
from ..evaluate.table import PPL_TITLES, ZERO_SHOT, TableRow, row_scores
from .loading import LoadedFolder


def table_row(e: LoadedFolder) -> dict[str, Any] | None:
    """One row of the Table-1-shaped comparison, from an entry's eval.json (None without one)."""
    ev = e.evaluation
    if ev is None:
        return None
    ratio = (ev.get("cost") or {}).get("ratio")
    if ratio is None and e.plan is not None:
        ratio = e.plan.outcome.ratio
    subject = ev["subject"]
    if ratio is None and subject.get("params") and subject.get("reference_params"):  # evaluated without cost figures
        ratio = 1 - subject["params"] / subject["reference_params"]
    if ratio is None and ev["subject"]["method"] == "dense":
        ratio = 0.0
    zs = ev.get("zero_shot", {})
    scores = row_scores(ev)  # as compare's rows hold them
    ppl = scores["perplexity"]
    method = ev["subject"]["method"]
    healing = ev["subject"].get("healing")
    if healing:
        method += f" + LoRA ({healing['steps']} steps)"
    return {"label": e.label, "method": method, "ratio": ratio,
            "wikitext2": ppl.get("wikitext2"), "ptb": ppl.get("ptb"),
            "texts": {t: v for t, v in ppl.items() if t not in PPL_TITLES},
            "tasks": scores["zero_shot"], "metrics": scores["metrics"],
            "num_fewshot": (ev.get("settings") or {}).get("num_fewshot") or 0,
            "average": scores["average"],
            "subset": {"windows": (ev.get("perplexity", {}).get("wikitext2") or {}).get("windows"),
                       "docs": {t: zs[t].get("docs") for t in zs}}}


def add_recovery(rows: list[dict[str, Any]]) -> bool:
    """Give every row `recovery`, its average as a fraction of the dense row's (the first dense row given);
    False when no dense row has an average to compare with."""
    dense = next((r["average"] for r in rows if r["method"] == "dense" and r["average"]), None)
    for r in rows:
        r["recovery"] = r["average"] / dense if dense and r["average"] is not None else None
    return dense is not None


def markdown_table(rows: list[dict[str, Any]], recovery: bool = False) -> str:
    """The report's Table 1: model, method and ratio, then the scores (`evaluate.table`), then % of dense."""
    ratio = lambda r: f"{100 * r['ratio']:.1f}%" if r["ratio"] is not None else "–"  # noqa: E731
    ppl = ["wikitext2"] + (["ptb"] if any(r.get("ptb") is not None for r in rows) else [])  # PTB when measured
    ppl += sorted({t for r in rows for t in r.get("texts", {})})  # perplexity of local texts (ppl:FILE)
    cells = [TableRow([r["label"], r["method"], ratio(r)],
                      {"wikitext2": r.get("wikitext2"), "ptb": r.get("ptb"), **r.get("texts", {})},
                      r["tasks"], r.get("metrics", {}), r["average"],
                      [table.number(r.get("recovery"), True)] if recovery else []) for r in rows]
    other = sorted({t for r in rows for t in r["tasks"]} - set(ZERO_SHOT))  # custom and other lm-eval tasks
    return table.markdown_table(["Model", "Method", "Ratio"], cells, perplexity=ppl, other=other,
                                trail=["% of dense"] if recovery else [])


def cost_table(entries: list[LoadedFolder]) -> list[str]:
    rows = [(e.label, e.evaluation["cost"]) for e in entries if e.evaluation and e.evaluation.get("cost")]
    if not rows:
        return []
    lines = ["### Cost", "", "| Model | Params | Ratio | Latency (128 tokens) | Load (CPUs) | KV cache / token | "
             "Peak memory |", "|---|---|---|---|---|---|---|"]
    caveats = []
    for label, c in rows:
        ratio = f"{100 * c['ratio']:.1f}%" if c.get("ratio") is not None else "–"
        lat = c["latency"]
        load = f"{lat['load_average'][0]:.1f} ({lat['cpus']})" if lat.get("load_average") else "–"  # older eval.json
        mark = " ⚠" if lat.get("caveat") else ""
        if lat.get("caveat"):
            caveats.append(f"{label}: {lat['caveat']}")
        lines.append(f"| {label} | {c['params']:,} | {ratio} | {lat['mean_s']:.3f} ± {lat.get('stdev_s', 0.0):.3f} s"
                     f"{mark} | {load} | {c['kv_cache_bytes_per_token']:,} B | "
                     f"{c['peak_memory']['bytes'] / 2**20:.0f} MiB ({c['peak_memory']['what']}) |")
    if caveats:
        lines += ["", "⚠ Latency " + "; ".join(caveats) + ". Re-run `blockprune eval` on a quiet machine to compare "
                  "latencies."]
    return lines + [""]


def healing_section(entries: list[LoadedFolder]) -> list[str]:
    healed = [e for e in entries if e.healing]
    if not healed:
        return []
    lines = ["## Healing", "", "| Model | LoRA steps | Tokens (with loss) | Time | Validation loss before → after |",
             "|---|---|---|---|---|"]
    for e in healed:
        h = e.healing
        lines.append(f"| {e.label} | {h['steps']} | {h['tokens']:,} ({h['label_tokens']:,}, "
                     f"{h['data'].get('loss_on', '?')}) | {h['seconds']:.0f} s | "
                     f"{h['val_loss_before']:.3f} → {h['val_loss_after']:.3f} |")
    return lines + [""]
