"""Print the "Healing" table of bench/RESULTS.md from a bench/heal/run.py folder's results.json: dense,
pruned and each healed model on the evaluation subset, and the machines their evaluations ran on (each
eval.json's records; "not recorded" where it holds none).

    python bench/heal/results_md.py [FOLDER]   # default bench/heal/smollm2-bp20"""
import json
import sys
from pathlib import Path

from blockprune import machine
from blockprune.evaluate.table import TASK_TITLES, ZERO_SHOT


def main(folder: str = "bench/heal/smollm2-bp20") -> None:
    out = Path(folder)
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = {"dense": ("dense", "0%", out / "eval" / "dense"),
            "pruned": (f"pruned ({r['settings']['method']})", f"{r['ratio']:.1%}", out / "run" / "eval")}
    rows |= {name: (f"{name}, {h['steps']} steps", f"{r['ratio']:.1%}", out / name / "eval")
             for name, h in r["healing"].items()}
    print("| model | ratio | WikiText-2 ppl | " + " | ".join(TASK_TITLES[t] for t in ZERO_SHOT)
          + " | average | % of dense |")
    print("|---|---|---|" + "---|" * len(ZERO_SHOT) + "---|---|")
    for key, (label, ratio, _) in rows.items():
        m = r["models"][key]
        cells = [f"{m['wikitext2_ppl']:.2f}", *(f"{100 * m['zero_shot'][t]:.2f}" for t in ZERO_SHOT),
                 f"{100 * m['average']:.2f}", f"{m['recovery_pct']:.1f}"]
        print(f"| {label} | {ratio} | " + " | ".join(cells) + " |")
    print()
    print("\n".join(machine.table_lines({key: machine.folder_records(where) for key, (_, _, where) in rows.items()})))


if __name__ == "__main__":
    main(*sys.argv[1:2])
