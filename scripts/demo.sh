#!/usr/bin/env bash
# The main job on the embedded default: install, prune SmolLM2-135M with BlockPruner, print a short report.
# Offline data comes from ../shared/data (or $BLOCKPRUNE_DATA); the run lands in runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${OUT:-runs/demo}
rm -rf "$OUT"
blockprune prune --model smollm2-135m --data-dir "$DATA" --calibration alpaca --nsamples 16 --seqlen 256 \
  --block-type mix --num-blocks 4 --scorer racing --out "$OUT"
if blockprune report --help >/dev/null 2>&1; then
  blockprune report "$OUT" --out "$OUT/report" && echo "report: $OUT/report"
fi
