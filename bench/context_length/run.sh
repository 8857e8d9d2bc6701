#!/usr/bin/env bash
# Context length (issue 19, "find out why"): bench/calibration_size's searches calibrate on 128-token windows
# and are evaluated on 2048-token ones. A search that cannot see long context may remove attention blocks
# that only long context needs. This evaluates the same pruned models on the same first 16,384 tokens of the
# WikiText-2 test cut into windows of 128, 512 and 2048 tokens: if BlockPruner's loss to ShortGPT grows with
# the window, the calibration's window length is part of why it loses.
#
#   bash bench/context_length/run.sh [OUT]   (one thread; re-run to resume: finished evaluations are kept)
#
# Models: the dense SmolLM2-135M and bench/calibration_size's ShortGPT and BlockPruner at 4 and 16 rows.
# Then table.py writes OUT/table.md and OUT/table.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${1:-bench/context_length/smollm2-r20}
RUNS=${RUNS:-bench/calibration_size/smollm2-r20}
TOKENS=16384
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for name in dense shortgpt-n4 blockpruner-n4 shortgpt-n16 blockpruner-n16; do
    for len in 128 512 2048; do
        ev="$OUT/$name-$len"
        [ -f "$ev/eval.json" ] && continue
        target=(--model smollm2-135m)
        [ "$name" = dense ] || target=("$RUNS/$name")
        blockprune eval "${target[@]}" --data-dir "$DATA" --tasks wikitext2 --seqlen "$len" \
            --max-windows $((TOKENS / len)) --no-cost --out "$ev"
    done
done
python bench/context_length/table.py "$OUT"
