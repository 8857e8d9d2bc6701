"""Table of bench/context_length/run.sh: WikiText-2 perplexity of each model on the same 16,384 tokens cut
into windows of each length, and each pruned model's perplexity over the dense model's at that length, and
the machines the evaluations ran on (each eval.json's records; "not recorded" where they hold none).

    python bench/context_length/table.py bench/context_length/smollm2-r20"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from blockprune import atomic, machine

MODELS = ("dense", "shortgpt-n4", "blockpruner-n4", "shortgpt-n16", "blockpruner-n16")
LENGTHS = (128, 512, 2048)


def ppl(out: Path, name: str, length: int) -> float | None:
    ev = out / f"{name}-{length}" / "eval.json"
    return json.loads(ev.read_text())["perplexity"]["wikitext2"]["ppl"] if ev.exists() else None


def page(out: Path) -> tuple[str, dict]:
    """table.md's text and table.json's record for a folder."""
    table = {m: {n: ppl(out, m, n) for n in LENGTHS} for m in MODELS}
    f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    head = " | ".join(f"{n} tokens" for n in LENGTHS)
    lines = [f"| Model | {head} | {' | '.join(f'x dense at {n}' for n in LENGTHS)} |", "|" + "---|" * (1 + 2 * len(LENGTHS))]
    for m in MODELS:
        rel = [None if table[m][n] is None or table["dense"][n] is None else table[m][n] / table["dense"][n]
               for n in LENGTHS]
        lines.append(f"| {m} | {' | '.join(f(table[m][n]) for n in LENGTHS)} | {' | '.join(f(r) for r in rel)} |")
    evaluated = {m: [r for n in LENGTHS for r in machine.folder_records(out / f"{m}-{n}")] for m in MODELS}
    return "\n".join([*lines, "", *machine.table_lines({m: r for m, r in evaluated.items() if r})]), table


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
