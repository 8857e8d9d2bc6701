#!/usr/bin/env bash
# Method comparison on SmolLM2-135M at a 20% target ratio (issue 5), recorded in bench/RESULTS.md.
# Methods run cheapest-to-most-informative first; the table (OUT/comparison.md) grows as each finishes.
#
#   bash bench/compare/run.sh [OUT [METHODS]]   (re-run to resume; finished searches and evaluations are kept)
#
# Parts of the method list can run as separate processes into the same OUT (each method owns its
# subfolder); a final run with the whole list then only assembles OUT/comparison.md. As recorded:
#   bash bench/compare/run.sh OUT shortgpt,relative-magnitude,blockpruner-oneshot,layer-ppl,blockpruner:bi,blockpruner:rm &
#   bash bench/compare/run.sh OUT blockpruner,blockpruner-refined,blockpruner:js &
#   wait; bash bench/compare/run.sh OUT
#
# Calibration: Alpaca (../shared/data/calibration/alpaca_5000.json), 4 rows sampled with seed 42,
# 128-token windows (3 windows, 384 tokens), the same for every method. Small because the greedy
# searches score ~2700 candidate-windows each on a 2-core CPU.
# Evaluation: the standard quick subset (blockprune.evaluate.QUICK_WINDOWS / QUICK_DOCS): the first 8
# WikiText-2 windows of 2048 tokens and the first 100 documents of each of the five zero-shot tasks
# (lm-eval, offline copies), the same for every method and the dense model.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${1:-bench/compare/smollm2-r20}
METHODS=${2:-shortgpt,relative-magnitude,blockpruner,blockpruner-oneshot,layer-ppl,blockpruner-refined,blockpruner:bi,blockpruner:rm,blockpruner:js}
# One process uses every core (torch's default); when running parts side by side, give each
# OMP_NUM_THREADS=1.
exec blockprune compare --model smollm2-135m --data-dir "$DATA" --ratio 0.2 \
    --methods "$METHODS" \
    --calibration alpaca --nsamples 4 --seqlen 128 --seed 42 --batch-size 8 --scorer incremental \
    --out "$OUT"
