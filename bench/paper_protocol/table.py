"""Print the "Paper protocol (issue 16)" table of bench/RESULTS.md from bench/paper_protocol/{racing,default}:
each lane's search minutes (timings.json; steps 2 on ran side by side, racing's step 1 on another machine),
its candidate-windows (plan.json; the two-precision scorer's bf16 and fp32 windows apart), and the machines
the timings came from ("not recorded" where timings.json holds no records).

    python bench/paper_protocol/table.py"""
import json
from pathlib import Path

from blockprune import machine, timings

ROOT = Path(__file__).resolve().parent


def main() -> None:
    rows, records = [], {}
    for lane in ("racing", "default"):
        plan = json.loads((ROOT / lane / "plan.json").read_text(encoding="utf-8"))
        secs = timings.step_seconds(ROOT / lane)
        o, steps = plan["options"], plan["steps"]
        exhaustive = sum(s["exhaustive_windows"] for s in steps)
        if o["scorer"] == "fast":
            label = f"fast ({o['fast_dtype']} race, {o['dtype']} decisions)"
            fast, full = (sum(s["precision"][k] for s in steps) for k in ("fast_windows", "full_windows"))
            windows = f"{fast:,} {o['fast_dtype']} + {full:,} {o['dtype']}"
        else:
            label, windows = f"{o['scorer']} ({o['dtype']})", f"{sum(s['evaluated_windows'] for s in steps):,}"
        rest = [s / 60 for s in secs[1:]]
        rows.append(f"| {label} | {sum(rest):.1f} | {min(rest):.1f}-{max(rest):.1f} | {sum(secs) / 60:.1f} "
                    f"(step 1: {secs[0] / 60:.1f}) | {windows} |")
        records[o["scorer"]] = machine.folder_records(ROOT / lane)
    print(f"| Scorer | Steps 2-{len(secs)}, side by side (min) | Per step, 2-{len(secs)} (min) | Whole search (min) "
          f"| Candidate-windows (of {exhaustive:,} exhaustive) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("\n".join(machine.table_lines(records)))


if __name__ == "__main__":
    main()
