"""Do today's searches reproduce the recorded plans byte for byte?

Re-runs every recorded search from what its plan.json records (model, calibration, options) with the code as
it is now, into a temporary folder, and compares the new plan.json with the recorded one byte for byte:

- bench/compare/smollm2-r20/*/plan.json (the method comparison's nine searches);
- bench/plans/demo/plan.json: `scripts/demo.sh`'s search, recorded by the code before issue 17's restructure;
- bench/search_speed's selections: `--num-blocks 2` on the fixed calibration text with the incremental,
  racing and (bf16 forced) fast scorers, against exhaustive fp32 scoring's removals and perplexity in
  every machine's bench/search_speed/results/<machine tag>.json.

On the machine kind that recorded a plan the bytes are identical. Another CPU sums floats in another order
(vector width, bf16 units), so its perplexities differ in the last bits: a plan that is not byte-identical
passes when every step removes the same unit and every recorded perplexity (dense, each step's, the
monitor's) is within PPL_RTOL of the recorded one; the line says which of the two held, and which of the
plan's fields differ (`versions` alone where only a library's version moved).

    python bench/plans/check.py [NAME ...]   (names as printed, e.g. compare/shortgpt demo speed/racing)

Batch size (windows per forward pass) orders the sums behind a score, so it can move a score's last bits;
plans record it when it is not 1 (issue 34), and a plan that records it is re-run with it. The plans here
are older and do not say theirs: bench/compare ran with `--batch-size 8`, which before issue 17 reached the
metric scorers (bi, rm, js) but not ShortGPT's, Relative Magnitude's or one-shot's own passes: each plan is
re-run with batch size 8 first when a metric ranked it, else 1, and with the other if the first differs;
the line says which reproduced it. Older plans also recorded a scorer where none scores by perplexity
(ShortGPT, Relative Magnitude, metric-ranked searches): each recorded plan is compared with its options as
today's code records them for that batch size (`recorded_as_now`), everything else byte for byte.

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
from blockprune.atomic import dumps_json

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("BLOCKPRUNE_DATA", ROOT.parent / "shared" / "data"))
RECORDED = {f"compare/{p.parent.name}": p for p in sorted((ROOT / "bench/compare/smollm2-r20").glob("*/plan.json"))}
RECORDED["demo"] = ROOT / "bench/plans/demo/plan.json"
SPEED = ("incremental", "racing", "fast")
#: relative tolerance for perplexities recomputed on another CPU. Measured differences: 2.2e-7 between the
#: AVX2 and AVX512-BF16 machines' exhaustive fp32 perplexity in bench/search_speed, at most 2e-7 per step
#: between the paper-protocol lanes' machines (bench/RESULTS.md); 1e-5 leaves room for longer searches while
#: staying far below any gap a search decides on (near-ties differ by 1e-4 and more).
PPL_RTOL = 1e-5


def close(new: float | None, old: float | None) -> bool:
    return new == old or (new is not None and old is not None and abs(new - old) <= PPL_RTOL * abs(old))


def same_outcome(new: dict, old: dict) -> tuple[bool, str]:
    """Removals compared exactly, perplexities within PPL_RTOL: what a plan recomputed on another CPU keeps."""
    if [s["removed"] for s in new["steps"]] != [s["removed"] for s in old["steps"]]:
        return False, "different removals"
    pairs = [(new["dense"].get(k), old["dense"].get(k)) for k in ("ppl", "validation_ppl")]
    pairs += [(a.get(k), b.get(k)) for a, b in zip(new["steps"], old["steps"]) for k in ("ppl", "validation_ppl")]
    worst = max((abs(a - b) / abs(b) for a, b in pairs if a is not None and b), default=0.0)
    if not all(close(a, b) for a, b in pairs):
        return False, f"same removals, perplexities differ by up to {worst:.1e} (tolerance {PPL_RTOL:g})"
    return True, f"same removals, perplexities within {worst:.1e} (tolerance {PPL_RTOL:g})"


def options_of(plan: dict) -> PruneOptions:
    """The options a recorded plan ran with (what binds a plan is recorded; the rest are defaults that do
    not change the result). No monitor unless the plan had one."""
    rec = dict(plan["options"])
    rec.setdefault("validation", "none")
    return PruneOptions(**rec)


def recorded_as_now(plan: dict, opts: PruneOptions) -> bytes:
    """The recorded plan with its options as today's code records them for `opts` (see the module's
    docstring): the bytes a re-run must give."""
    return dumps_json({**plan, "options": opts.resolved("cpu").recorded()}).encode("utf-8")


def rerun(name: str, path: Path) -> tuple[bool, str]:
    plan = json.loads(path.read_bytes())
    sizes = (8, 1) if plan["options"].get("metric", "ppl") != "ppl" else (1, 8)
    if "batch_size" in plan["options"]:
        sizes = (plan["options"]["batch_size"],)
    elif not name.startswith("compare/"):
        sizes = (1,)
    tried = []
    for batch in sizes:
        opts = replace(options_of(plan), batch_size=batch)
        recorded = recorded_as_now(plan, opts)
        with tempfile.TemporaryDirectory() as tmp:
            prune(plan["model"]["source"], Path(tmp) / "run", options=opts, data_dir=DATA, export=False, progress=False)
            new = (Path(tmp) / "run" / "plan.json").read_bytes()
        if new == recorded:
            return True, f"{len(new)} bytes identical (batch size {batch})"
        a, b = json.loads(new), json.loads(recorded)
        same, what = same_outcome(a, plan)
        keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if same:
            return True, f"{what}, not byte-identical: differs in {', '.join(keys) or 'formatting'} (batch size {batch})"
        tried.append(f"batch size {batch}: {what}; differs in {', '.join(keys)}")
    return False, "; ".join(tried)


def speed(scorer: str) -> tuple[bool, str]:
    """Against exhaustive fp32 scoring on every machine that recorded it: the same removals, the final
    perplexity within PPL_RTOL of each."""
    recorded = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "bench/search_speed/results").glob("*.json"))}
    want = next(iter(recorded.values()))
    opts = PruneOptions(num_blocks=want["k"], calibration=str(DATA / "calibration" / "alpaca_sample16.txt"),
                        seqlen=want["seqlen"], scorer=scorer, validation="none",
                        fast_dtype="bf16" if scorer == "fast" else "auto")
    with tempfile.TemporaryDirectory() as tmp:
        res = prune("smollm2-135m", Path(tmp) / "run", options=opts, data_dir=DATA, export=False, progress=False)
    removed, ppl = res.plan.removed, res.plan.steps[-1]["ppl"]
    plain = {tag: r["modes"]["plain"] for tag, r in recorded.items()}
    same = all(removed == p["removed"] and close(ppl, p["ppl"]) for p in plain.values())
    return same, (f"removed {removed}, ppl {ppl!r} (exhaustive fp32: "
                  + "; ".join(f"{tag} {p['removed']}, {p['ppl']!r}" for tag, p in plain.items())
                  + f"; tolerance {PPL_RTOL:g})")


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
