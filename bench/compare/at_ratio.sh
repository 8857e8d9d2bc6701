#!/usr/bin/env bash
# A greedy search cut back to a smaller ratio (bench/compare/at_ratio.py) and evaluated as the paper
# protocol evaluates (bench/compare/run.sh): the whole WikiText-2 and PTB tests in 2048-token windows, the
# first 300 documents of each zero-shot task. Each part is its own eval.json: re-run to finish the parts
# an interruption left.
#
#   bash bench/compare/at_ratio.sh SRC_RUN RATIO OUT_RUN
#   e.g. bash bench/compare/at_ratio.sh bench/compare/smollm2-r20-paper/blockpruner-joint \
#            0.1842223582962579 bench/compare/smollm2-at-layer-ppl-size/blockpruner-joint
#   (0.1842223582962579: layer-ppl's ratio in bench/compare/smollm2-r20-paper)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
SRC=$1 RATIO=$2 OUT=$3
[ -e "$OUT/plan.json" ] || python bench/compare/at_ratio.py "$SRC" "$RATIO" "$OUT"
[ -e "$OUT/eval-ppl/eval.json" ] || blockprune eval "$OUT" --model smollm2-135m --data-dir "$DATA" \
    --tasks wikitext2,ptb --no-cost --out "$OUT/eval-ppl"
[ -e "$OUT/eval-zero-shot/eval.json" ] || blockprune eval "$OUT" --model smollm2-135m --data-dir "$DATA" \
    --tasks piqa,winogrande,hellaswag,arc_easy,arc_challenge --limit 300 --no-cost --out "$OUT/eval-zero-shot"
