#!/usr/bin/env bash
# The recorded healing benchmark (bench/RESULTS.md, "Healing"). Re-running resumes; finished stages are kept.
#
# - the removal set: bench/compare's iterative BlockPruner plan for SmolLM2-135M at a 20% target (19.7%
#   removed; Alpaca calibration, 4 rows sampled with seed 42, 128-token windows), exported here;
# - healing: 100 optimizer steps (batch 1 x accumulation 4 = 400 Alpaca examples, <= 256 tokens each),
#   the paper's LoRA settings otherwise, 20 held-out examples for validation loss;
# - evaluation: the standard quick subset, the first 8 WikiText-2 windows of 2048 tokens and the first
#   100 documents of each zero-shot task; the dense row is bench/compare's dense evaluation on exactly that subset (same code and data).
#   bash bench/heal/run.sh               # every stage in turn, then OUT/results.json and OUT/report
#   bash bench/heal/run.sh pruned & bash bench/heal/run.sh plan,heal,healed; wait; bash bench/heal/run.sh summary
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python bench/heal/run.py --data-dir "$DATA" --out bench/heal/smollm2-bp20 \
    --plan bench/compare/smollm2-r20/blockpruner/plan.json \
    --steps "${STEPS:-100}" --heal-name "${NAME:-healed}" --max-length 256 --val-size 20 --save-every 10 \
    --eval-every "${EVAL_EVERY:-50}" \
    --max-windows 8 --limit 100 --dense-eval bench/compare/smollm2-r20/dense/eval.json \
    --stages "${1:-plan,pruned,heal,healed,summary}"
