#!/usr/bin/env bash
# The recorded healing benchmark (bench/RESULTS.md, "Healing"). Re-running resumes; finished stages are kept.
#
# Budget for a 2-core machine shared with other jobs (a SmolLM2 forward+backward ran at ~10 tokens/s):
# - the removal set: BlockPruner's one-shot variant (every block scored once by calibration perplexity
#   with it masked, removed in ascending order up to 20% of the parameters) on 8 Alpaca rows cut into
#   256-token windows; the iterative search needs ~15 such passes, which did not fit this session;
# - healing: 60 optimizer steps (batch 1 x accumulation 4 = 240 Alpaca examples, <= 256 tokens each),
#   the paper's LoRA settings otherwise, 20 held-out examples for validation loss;
# - evaluation: the first 4 WikiText-2 windows of 2048 tokens and the first 50 documents of each zero-shot
#   task; the dense row is bench/compare's dense evaluation on exactly that subset (same code and data).
# With no argument it runs every stage in turn; the recorded run used two processes side by side:
#   bash bench/heal/run.sh plan
#   bash bench/heal/run.sh pruned &  bash bench/heal/run.sh heal,healed;  wait
#   STEPS=100 NAME=healed-100 EVAL_EVERY=50 bash bench/heal/run.sh heal,healed   (a second, longer budget)
#   bash bench/heal/run.sh summary
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec python bench/heal/run.py --data-dir "$DATA" --out bench/heal/smollm2-r20 \
    --method blockpruner-oneshot --calibration alpaca --nsamples 8 --seqlen 256 --ratio 0.2 \
    --steps "${STEPS:-60}" --heal-name "${NAME:-healed}" --max-length 256 --val-size 20 --save-every 10 \
    --eval-every "${EVAL_EVERY:-30}" \
    --max-windows 4 --limit 50 --dense-eval bench/compare/smollm2-r20/dense/eval.json \
    --stages "${1:-plan,pruned,heal,healed,summary}"
