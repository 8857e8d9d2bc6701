#!/usr/bin/env bash
# Method comparison on SmolLM2-135M at a 20% target ratio (issue 5), recorded in bench/RESULTS.md.
#
#   bash bench/compare/run.sh [OUT [METHODS]]   (re-run to resume; finished searches and evaluations are kept)
#
# With no METHODS, the methods run in two lanes side by side, one process (one thread) per core of this
# 2-core machine, into the same OUT, each method in its own subfolder; lane A evaluates the dense model
# after its first search, before lane B's first search ends. Each lane logs to OUT/lane-*.log; a last
# pass over the whole list only assembles OUT/comparison.md (everything is done by then) and prints it.
# With METHODS, one process runs just those.
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
ALL=shortgpt,relative-magnitude,blockpruner,blockpruner-oneshot,layer-ppl,blockpruner-refined,blockpruner:bi,blockpruner:rm,blockpruner:js
LANE_A=shortgpt,relative-magnitude,blockpruner-oneshot,layer-ppl,blockpruner:bi,blockpruner:rm
LANE_B=blockpruner,blockpruner-refined,blockpruner:js  # the long greedy searches

compare() {
    blockprune compare --model smollm2-135m --data-dir "$DATA" --ratio 0.2 --methods "$1" \
        --calibration alpaca --nsamples 4 --seqlen 128 --seed 42 --batch-size 8 --scorer incremental \
        --out "$OUT"
}

if [ -n "${2:-}" ]; then
    compare "$2"
    exit
fi
start=$SECONDS
. bench/lanes.sh
two_lanes "$OUT" compare "$LANE_A" "$LANE_B" || exit 1
compare "$ALL"
echo "bench/compare: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s in all"
