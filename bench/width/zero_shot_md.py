"""Print the zero-shot table of bench/RESULTS.md's "Width pruning" section from its committed records: the
four width-pruned checkpoints' quick-subset evaluations (bench/width/results/zero_shot_*/eval.json, written by
`blockprune eval --quick`) beside the dense model's quick subset (bench/eval/dense/results.json), and the
machines they ran on.

    python bench/width/zero_shot_md.py"""
from __future__ import annotations

import json
from pathlib import Path

from blockprune import machine
from blockprune.evaluate.table import ZERO_SHOT, row_scores

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "width" / "results"
DENSE = ROOT / "bench" / "eval" / "dense" / "results.json"
#: row label -> evaluation folder; uniform width-local is the same model as uniform llm-bip by construction
#: (RESULTS explains why), so one evaluation serves both
ROWS = {"uniform / llm-bip (= width-local)": "zero_shot_uniform_llm_bip",
        "uniform / width-magnitude": "zero_shot_uniform_magnitude",
        "global / llm-bip": "zero_shot_global_llm_bip",
        "global / width-local": "zero_shot_global_local"}


def row(label: str, ev: dict) -> str:
    """A model's row from its eval record (the dense model's: its quick subset's), scored as compare's are."""
    scores = row_scores(ev)
    cells = [f"{100 * scores['zero_shot'][t]:.1f}" for t in ZERO_SHOT]
    return f"| {label} | {' | '.join(cells)} | {100 * scores['average']:.1f} |"


def main() -> None:
    dense = json.loads(DENSE.read_text(encoding="utf-8"))
    print(f"| model | {' | '.join(ZERO_SHOT)} | average |")
    print("|" + "---|" * (len(ZERO_SHOT) + 2))
    print(row("dense", dense["quick"]))
    records = {"dense": dense.get("machines") or [None]}
    for label, folder in ROWS.items():
        ev = json.loads((RESULTS / folder / "eval.json").read_text(encoding="utf-8"))
        print(row(label, ev))
        records[label] = machine.folder_records(RESULTS / folder)
    print()
    print("\n".join(machine.table_lines(records)))


if __name__ == "__main__":
    main()
