"""Print the Markdown table of a bench/eval/dense.py results file: the full sets beside the quick subset,
and the machine it ran on ("not recorded" for results.json, written before machine records).

    python bench/eval/results_md.py bench/eval/dense/results.json"""
import json
import sys

from blockprune import machine
from blockprune.evaluate.table import ZERO_SHOT


def score(row: dict | None, metric: str) -> str:
    if not row or metric not in row:
        return "–"
    return f"{100 * row[metric]:.2f} ± {100 * row[metric + '_stderr']:.2f}"


def main(path: str) -> None:
    r = json.load(open(path))
    full, quick = r["full"], r["quick"]
    totals = {t: d for t, d in r.get("totals", {}).items()}
    print("| figure | full set | done of full set | quick subset |")
    print("|---|---|---|---|")
    fw, qw = full["wikitext2"], quick["wikitext2"]
    print(f"| WikiText-2 ppl (2048-token windows) | {fw['ppl']:.3f} | {fw['windows']} of {r.get('windows_total', '?')} "
          f"windows | {qw['ppl']:.3f} ({qw['windows']} windows) |")
    for t in ZERO_SHOT:
        for m in (("acc",) if t == "winogrande" else ("acc", "acc_norm")):
            f, q = full["zero_shot"].get(t), quick["zero_shot"].get(t)
            done = f"{f['docs']} of {totals.get(t, '?')} docs" if f else "–"
            print(f"| {t} {m} | {score(f, m)} | {done} | {score(q, m)} |")
    avg = lambda s: "–" if not s["average"] else f"{100 * s['average']['value']:.2f}"
    print(f"| five-task average (acc_norm, winogrande acc) | {avg(full)} | | {avg(quick)} |")
    print()
    print("\n".join(machine.table_lines({"every figure": r.get("machines")})))


if __name__ == "__main__":
    main(sys.argv[1])
