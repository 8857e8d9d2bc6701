#!/usr/bin/env bash
# How long the CLI takes to print help or refuse a bad argument (issue 34: under 1.5 s each on an idle
# machine). Neither needs torch or transformers: `blockprune` parses first and imports them only to run.
#
#   bash bench/cli_speed/run.sh [REPEATS]      # default 5 timed runs of each command
#
# Prints each command's timings and writes this kind of machine's own file, bench/cli_speed/results/<machine
# tag>.json (blockprune.machine.results_file: a run on another CPU lands beside it), with the command, the
# machine record (blockprune.machine.describe(), taken after the timings so that importing torch for it
# warms nothing they measure), the load average before and after, and every timing. The first run of each command after an edit of the
# package rebuilds the cached arguments (src/blockprune/commands/recorded.py): it is timed apart as
# "first" and not in the median. Run it on an idle machine; timings taken beside other jobs say little.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS="${1:-5}"
exec python - "$REPEATS" "bash bench/cli_speed/run.sh $*" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone

repeats, command = int(sys.argv[1]), sys.argv[2].strip()
exe = [shutil.which("blockprune")] if shutil.which("blockprune") else [sys.executable, "-m", "blockprune.cli"]
cases = {"blockprune --help": ["--help"],
         "blockprune prune --help": ["prune", "--help"],
         "blockprune prune --num-blocks x (argument error)": ["prune", "--num-blocks", "x"]}
cache = tempfile.mkdtemp(prefix="blockprune-cli-speed.")  # a cache of its own: the first run is cold
env = {**os.environ, "BLOCKPRUNE_CACHE": cache}

def timed(args):
    t0 = time.perf_counter()
    done = subprocess.run(exe + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, done.returncode

load_before = os.getloadavg()
results = {}
for name, args in cases.items():
    first, rc = timed(args)
    runs = [round(timed(args)[0], 3) for _ in range(repeats)]
    results[name] = {"argv": args, "exit_status": rc, "first_s": round(first, 3), "runs_s": runs,
                     "median_s": round(statistics.median(runs), 3), "best_s": min(runs)}
    print(f"{name:52s} median {results[name]['median_s']:.3f} s  best {min(runs):.3f} s  "
          f"(first, cache cold: {first:.3f} s; exit {rc})")
load_after = os.getloadavg()
shutil.rmtree(cache, ignore_errors=True)
from blockprune import atomic, machine  # after the timings: it imports torch

path = machine.results_file("bench/cli_speed/results")
record = {"command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "executable": "blockprune" if len(exe) == 1 else "python -m blockprune.cli", "machine": machine.describe(),
          "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
          "repeats": repeats, "target_s": 1.5, "results": results}
atomic.write_json(path, record)
print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; machine: {machine.summary(record['machine'])}; "
      f"wrote {path}")
PY
