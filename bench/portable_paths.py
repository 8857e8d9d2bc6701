"""Rewrite the absolute paths of the machine a committed record was written on, and nothing else.

Records written before their writers were fixed hold paths such as /work/main/... or /tmp/...; each rule
below names the old path and what the fixed writer records instead (heal: the input relative to the heal
folder; bench/inference: paths relative to the repository; evaluations: the data folder as `--data-dir
../shared/data` names it, and the run folder evaluated relative to the repository, as `blockprune eval`
records it now; checkpoints made in a scratch folder outside the repository: `$CKPT_DIR`). The text is
edited in place, so numbers keep their exact digits, and each file is checked afterwards: parsed, it equals
the old record with only these path strings changed.

    python bench/portable_paths.py          # rewrites; prints each file changed
    python bench/portable_paths.py --check  # exit 1 if a rule still applies anywhere
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: (files, old path, new path), in order; the files are a glob under bench/
RULES = [
    ("heal/*/**/*.json", "/work/main/bench/heal/smollm2-bp20/run", "../run"),
    ("heal/*/**/*.json", "/work/main/bench/heal/smollm2-r20/run", "../run"),
    ("inference/**/*.json", "/work/main/bench/inference/plan/plan.json", "bench/inference/plan/plan.json"),
    ("inference/**/*.json", "/tmp/alpaca_head640.txt", "alpaca_head640.txt"),
    ("width/results/**/*.json", "/tmp/w/ckpts/", "$CKPT_DIR/"),
    ("width/results/**/*.json", "/work/shared/data/", "../shared/data/"),
    # the quick-protocol comparison ran in /tmp/cmp2/out and was committed, folders unchanged, as this one
    ("compare/smollm2-r20/*/eval.json", "/tmp/cmp2/out/", "bench/compare/smollm2-r20/"),
]


def replaced(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(v, old, new) for v in value]
    return value


def committed(pattern: str) -> list[Path]:
    tracked = set(subprocess.run(["git", "ls-files", "bench"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    return sorted(p for p in (ROOT / "bench").glob(pattern) if str(p.relative_to(ROOT)) in tracked)


def main(check: bool) -> int:
    pending = 0
    for pattern, old, new in RULES:
        for path in committed(pattern):
            text = path.read_text(encoding="utf-8")
            if old not in text:
                continue
            pending += 1
            if check:
                print(f"{path.relative_to(ROOT)}: {old}")
                continue
            after = text.replace(old, new)
            # only the path strings moved: the parsed record equals the old one with the rule applied to strings
            assert json.loads(after) == replaced(json.loads(text), old, new), path
            path.write_text(after, encoding="utf-8")
            print(f"{path.relative_to(ROOT)}: {text.count(old)} x {old} -> {new}")
    return 1 if check and pending else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
