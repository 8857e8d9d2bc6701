"""Table of the calibration-domain benchmark (bench/domain/run.sh): per calibration text and method, the
calibration and validation perplexity the search recorded, WikiText-2 and PTB perplexity (first 8 windows
of each test), what the search removed, and the machines its figures came from (each search's timings.json
and evaluation's eval.json records; "not recorded" where they hold none).

    python bench/domain/table.py bench/domain/smollm2-r20

Writes OUT/table.md and OUT/table.json; runs not finished yet are listed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from blockprune import atomic, machine, monitor
from blockprune.plan import Plan

RUNS = (("alpaca", "shortgpt"), ("alpaca", "blockpruner"), ("ptb", "shortgpt"), ("ptb", "blockpruner"))
ALPACA = Path("bench/calibration_size/smollm2-r20")  # run.sh's default ALPACA: the 16-row plans


def perplexities(ev: Path) -> dict | None:
    if not ev.exists():
        return None
    ppl = json.loads(ev.read_text())["perplexity"]
    return {k: ppl[k]["ppl"] for k in ("wikitext2", "ptb") if k in ppl}


def plan_folder(out: Path, cal: str, method: str) -> Path:
    return ALPACA / f"{method}-n16" if cal == "alpaca" else out / f"{cal}-{method}"


def read(out: Path, cal: str, method: str) -> dict | None:
    ppl = perplexities(out / f"{cal}-{method}" / "eval" / "eval.json")
    plan_dir = plan_folder(out, cal, method)
    if ppl is None or not (plan_dir / "plan.json").exists():
        return None
    plan = Plan.load(plan_dir)
    if plan.status != "done":
        return None
    verdict = monitor.check(plan) or {}
    return {"calibration_text": cal, "method": method, "windows": plan.calibration["windows"],
            "seqlen": plan.calibration["seqlen"], "removed": list(plan.removed), "ratio": plan.steps[-1]["ratio"],
            "calibration": plan.steps[-1]["ppl"], "validation": verdict.get("pruned_ppl"), **ppl}


def markdown(rows: list[dict], dense: dict | None) -> str:
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| Calibration text | Method | Windows | Removed | Ratio | Calibration PPL | Validation PPL | "
             "WikiText-2 PPL | PTB PPL |", "|" + "---|" * 9]
    if dense:
        lines.append(f"| – | dense | – | 0 | 0.0% | – | – | {f(dense.get('wikitext2'))} | {f(dense.get('ptb'))} |")
    for r in rows:
        lines.append(f"| {r['calibration_text']} | {r['method']} | {r['windows']} x {r['seqlen']} | "
                     f"{len(r['removed'])} | {100 * r['ratio']:.1f}% | {f(r['calibration'])} | "
                     f"{f(r['validation'])} | {f(r.get('wikitext2'))} | {f(r.get('ptb'))} |")
    lines.append("\nRemoved (in removal order):\n")
    lines += [f"- {r['calibration_text']} {r['method']}: {', '.join(r['removed'])}" for r in rows]
    return "\n".join(lines)


def page(out: Path) -> tuple[str, dict]:
    """table.md's text and table.json's record for a folder."""
    dense = perplexities(out / "dense" / "eval" / "eval.json")
    rows, missing = [], []
    records = {"dense": machine.folder_records(out / "dense" / "eval")} if dense else {}
    for cal, method in RUNS:
        r = read(out, cal, method)
        (rows.append(r) if r else missing.append(f"{cal}-{method}"))
        if r:
            records[f"{cal} {method}"] = (machine.folder_records(plan_folder(out, cal, method))
                                          + machine.folder_records(out / f"{cal}-{method}" / "eval"))
    md = markdown(rows, dense) + ("\n\nNot finished: " + ", ".join(missing) if missing else "")
    md += "\n\n" + "\n\n".join(machine.table_lines(records))
    return md, {"dense": dense, "rows": rows, "missing": missing}


def main(folder: str) -> None:
    out = Path(folder)
    md, table = page(out)
    atomic.write_text(out / "table.md", md + "\n")
    atomic.write_json(out / "table.json", table)
    print(md)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
