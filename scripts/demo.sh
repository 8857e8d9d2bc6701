#!/usr/bin/env bash
# The main job on the embedded default: install, prune SmolLM2-135M with BlockPruner, print a short report.
# Offline data comes from ../shared/data (or $BLOCKPRUNE_DATA); the run lands in runs/demo (or
# $BLOCKPRUNE_DEMO_OUT). A previous demo there is replaced; any other folder there is left alone and the
# demo stops.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
DEMO_OUT=${BLOCKPRUNE_DEMO_OUT:-runs/demo}
# only a blockprune run (it holds plan.json) is ever deleted, never a folder the demo did not make
if [ -e "$DEMO_OUT" ] && [ ! -f "$DEMO_OUT/plan.json" ]; then
  echo "demo: $DEMO_OUT exists and is not a blockprune run; move it away or set BLOCKPRUNE_DEMO_OUT to another folder" >&2
  exit 2
fi
bash scripts/install.sh
rm -rf "$DEMO_OUT"
blockprune prune --model smollm2-135m --data-dir "$DATA" --calibration alpaca --nsamples 16 --seqlen 256 \
  --block-type mix --num-blocks 4 --scorer racing --out "$DEMO_OUT"
if blockprune report --help >/dev/null 2>&1; then
  blockprune report "$DEMO_OUT" --out "$DEMO_OUT/report" && echo "report: $DEMO_OUT/report"
fi
