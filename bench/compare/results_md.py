"""Print the "Method comparison" section of bench/RESULTS.md from a comparison folder, including
methods whose search is still running or not started (their partial removal path and wall time so far),
and which machines each row's figures came from (its folder's compare.json, timings.json and eval.json
records; "not recorded" where they hold none).

    python bench/compare/results_md.py bench/compare/smollm2-r20 [METHODS]

METHODS (comma-separated) defaults to the quick protocol's list; pass the paper protocol's list for its folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from blockprune import machine, timings
from blockprune.compare import markdown, method_row, parse_methods
from blockprune.evaluate.resumable import missing_tasks, read
from blockprune.plan import Plan

ALL = "shortgpt,relative-magnitude,blockpruner,blockpruner-oneshot,layer-ppl,blockpruner-refined,blockpruner:bi,blockpruner:rm,blockpruner:js"


def main(folder: str, methods: str = ALL) -> None:
    out = Path(folder)
    result = json.loads((out / "comparison.json").read_text())  # for its header: model, calibration, eval
    rows = [r for r in result["rows"] if r["method"] == "dense"]
    folders = {"dense": out / "dense"}  # each printed method's folder, for the machines behind its figures
    for e in parse_methods(methods):  # every method whose search and evaluation are both finished
        sub = out / e.folder
        ev, run = read(sub / "eval.json"), read(sub / "compare.json")
        if run and ev and Plan.load(sub).status == "done" and not missing_tasks(ev, result["tasks"], result["eval"]):
            plan = Plan.load(sub)
            rows.append(method_row(e.label, plan, ev, run))
            folders[e.label] = sub
            # the dense model's held-out perplexity is in every plan made with the monitor
            if rows[0].get("validation_ppl") is None:
                rows[0]["validation_ppl"] = plan.dense.get("validation_ppl")
    result["rows"] = rows
    done = {r["method"] for r in rows}
    print(markdown(result).split("\n", 2)[2])  # without its title
    lines = []
    for e in parse_methods(methods):
        if e.label in done:
            continue
        sub = out / e.folder
        if not (sub / "plan.json").exists():
            lines.append(f"- {e.label}: not started")
            continue
        folders[e.label] = sub
        plan = Plan.load(sub)
        secs = sum(timings.step_seconds(sub))
        last = plan.steps[-1] if plan.steps else {"ratio": 0.0, "ppl": plan.dense.get("ppl")}
        if plan.search is not None and not plan.steps:  # a population search between generations
            s = plan.search
            lines.append(f"- {e.label}: {plan.status}, {len(s['history'])} of {s['generations']} generations in "
                         f"{s.get('seconds_so_far', 0.0):.0f} s of search (seeds included), parent calibration ppl "
                         f"{s['parent_ppl']:.2f}: {', '.join(s['parent'])}")
            continue
        lines.append(f"- {e.label}: {plan.status}, {len(plan.steps)} steps in {secs:.0f} s of search, ratio "
                     f"{last['ratio']:.1%}, calibration ppl {last['ppl']:.2f}; removed so far: {', '.join(plan.removed)}")
    if lines:
        print("Not finished in the session (resumable with the same command):\n")
        print("\n".join(lines))
    print()
    print("\n\n".join(machine.table_lines({label: machine.folder_records(sub) for label, sub in folders.items()})))


if __name__ == "__main__":
    main(*sys.argv[1:3])
