#!/usr/bin/env bash
# Method comparison at the BlockPruner paper's calibration (issue 19, item 3), recorded in bench/RESULTS.md.
#
#   bash bench/compare/paper.sh [OUT [METHODS]]   (re-run to resume: finished searches and evaluations are kept,
#                                                  a killed search continues from its last step)
#
# SmolLM2-135M at a 20% target ratio, calibrated as `blockprune prune` is by default: 256 Alpaca rows in
# 2048-token windows, seed 42. Scorer racing, the fastest here that decides like exhaustive scoring (its
# replay: bench/RESULTS.md "Search speed"); one-shot ranks by complete scores, so it runs incremental. The
# overfitting monitor is on (held-out Alpaca rows), so the plans record validation perplexity per step.
# Evaluation: the whole WikiText-2 and PTB tests in 2048-token windows, and the first 300 documents of each of
# the five zero-shot tasks (lm-eval, offline copies), the same for every method and the dense model.
#
# With no METHODS, two lanes side by side, one process (one thread) per core: lane A the one-pass methods,
# layer-ppl and one-shot (and the dense model's evaluation), lane B the long block searches. Each lane logs
# to OUT/lane-*.log; a last pass assembles OUT/comparison.md. With METHODS, one process runs just those.
# Hours of compute on a 2-core CPU: run it in the background and again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${1:-bench/compare/smollm2-r20-paper}
ALL=shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined
LANE_A=shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot
LANE_B=blockpruner,blockpruner-refined

compare() {
    blockprune compare --model smollm2-135m --data-dir "$DATA" --ratio 0.2 --methods "$1" --scorer racing \
        --tasks wikitext2,ptb,piqa,winogrande,hellaswag,arc_easy,arc_challenge --max-windows 0 --limit 300 \
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
echo "bench/compare/paper.sh: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s in all (this invocation)"
