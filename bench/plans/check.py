"""Do today's searches reproduce the recorded plans byte for byte?

Re-runs every recorded search from what its plan.json records (model, calibration, options) with the code as
it is now, into a temporary folder, and compares the new plan.json with the recorded one byte for byte:

- bench/compare/smollm2-r20/*/plan.json (the method comparison's nine searches);
- bench/plans/demo/plan.json: `scripts/demo.sh`'s search, recorded by the code before issue 17's restructure;
- bench/search_speed's selections: `--num-blocks 2` on the fixed calibration text with the incremental,
  racing and (bf16 forced) fast scorers, against exhaustive fp32 scoring's removals and perplexity in
  bench/search_speed/results.json.

    python bench/plans/check.py [NAME ...]   (names as printed, e.g. compare/shortgpt demo speed/racing)

Batch size (windows per forward pass) is not part of a plan, but it orders the sums behind a score, so
it can move a score's last bits. bench/compare ran with `--batch-size 8`, which before issue 17 reached the
metric scorers (bi, rm, js) but not ShortGPT's, Relative Magnitude's or one-shot's own passes: each plan is
re-run with batch size 8 first when a metric ranked it, else 1, and with the other if the first differs;
the line says which reproduced it.

One thread per process is enough; two processes can split the names. Prints one line per plan and exits 1
when any differs. Writes nothing in the repository."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from blockprune import PruneOptions, prune

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BLOCKPRUNE_DATA", ROOT.parent / "shared" / "data"))
RECORDED = {f"compare/{p.parent.name}": p for p in sorted((ROOT / "bench/compare/smollm2-r20").glob("*/plan.json"))}
RECORDED["demo"] = ROOT / "bench/plans/demo/plan.json"
SPEED = ("incremental", "racing", "fast")


def options_of(plan: dict) -> PruneOptions:
    """The options a recorded plan ran with (what binds a plan is recorded; the rest are defaults that do
    not change the result). No monitor unless the plan had one."""
    rec = dict(plan["options"])
    rec.setdefault("validation", "none")
    return PruneOptions(**rec)


def rerun(name: str, path: Path) -> tuple[bool, str]:
    recorded = path.read_bytes()
    plan = json.loads(recorded)
    sizes = (8, 1) if plan["options"].get("metric", "ppl") != "ppl" else (1, 8)
    tried = []
    for batch in sizes if name.startswith("compare/") else (1,):
        opts = replace(options_of(plan), batch_size=batch)
        with tempfile.TemporaryDirectory() as tmp:
            prune(plan["model"]["source"], Path(tmp) / "run", options=opts, data_dir=DATA, export=False, progress=False)
            new = (Path(tmp) / "run" / "plan.json").read_bytes()
        if new == recorded:
            return True, f"{len(new)} bytes identical (batch size {batch})"
        a = json.loads(new)
        keys = [k for k in sorted(set(a) | set(plan)) if a.get(k) != plan.get(k)]
        tried.append(f"batch size {batch}: differs in {', '.join(keys)}")
    return False, "; ".join(tried)


def speed(scorer: str) -> tuple[bool, str]:
    want = json.loads((ROOT / "bench/search_speed/results.json").read_text())
    exhaustive = want["modes"]["plain"]
    opts = PruneOptions(num_blocks=want["k"], calibration=str(DATA / "calibration" / "alpaca_sample16.txt"),
                        seqlen=want["seqlen"], scorer=scorer, validation="none",
                        fast_dtype="bf16" if scorer == "fast" else "auto")
    with tempfile.TemporaryDirectory() as tmp:
        res = prune("smollm2-135m", Path(tmp) / "run", options=opts, data_dir=DATA, export=False, progress=False)
    removed, ppl = res.plan.removed, res.plan.steps[-1]["ppl"]
    same = removed == exhaustive["removed"] and ppl == exhaustive["ppl"]
    return same, f"removed {removed}, ppl {ppl!r} (exhaustive fp32: {exhaustive['removed']}, {exhaustive['ppl']!r})"


def main(names: list[str]) -> int:
    checks = {**{n: (lambda n=n: rerun(n, RECORDED[n])) for n in RECORDED},
              **{f"speed/{s}": (lambda s=s: speed(s)) for s in SPEED}}
    unknown = [n for n in names if n not in checks]
    if unknown:
        print(f"unknown: {', '.join(unknown)}; choose from {', '.join(checks)}", file=sys.stderr)
        return 2
    failed = 0
    for name in names or list(checks):
        t0 = time.perf_counter()
        ok, what = checks[name]()
        failed += not ok
        print(f"{'same' if ok else 'DIFFERENT':9} {name}: {what} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
