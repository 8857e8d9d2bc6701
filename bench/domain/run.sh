#!/usr/bin/env bash
# Calibration domain (issue 19, "find out why"): bench/calibration_size found BlockPruner beating ShortGPT on
# held-out Alpaca rows and losing on WikiText-2. If it fits the calibration *domain*, calibrating both on a
# text of the evaluation's own domain should turn that around. SmolLM2-135M at 20%, ShortGPT and BlockPruner
# (racing), each calibrated on about 1,900 tokens in 128-token windows of one of two texts:
#
#   alpaca: 16 Alpaca rows, seed 42: bench/calibration_size's runs, evaluated here, not searched again
#   ptb:    7 rows of PTB's *validation* split (each row 10 consecutive sentences joined as PTB's test is),
#           seed 42; the monitor on the rows of that file the sample left out (the same number of rows)
#
# and evaluated on the first 8 windows of 2048 tokens of the WikiText-2 and PTB tests (the dense model too).
#
#   bash bench/domain/run.sh [OUT [JOBS]]   (re-run to resume; JOBS e.g. "dense ptb:shortgpt", one thread)
#
# Two lanes, one process (one thread) per core; then table.py writes OUT/table.md and OUT/table.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lanes.sh
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${1:-bench/domain/smollm2-r20}
ALPACA=${ALPACA:-bench/calibration_size/smollm2-r20}  # where the 16-row Alpaca runs are
LANE_A="dense ptb:shortgpt alpaca:shortgpt alpaca:blockpruner"
LANE_B="ptb:blockpruner"
EVAL=(--data-dir "$DATA" --tasks wikitext2,ptb --quick --no-cost)

ptb_rows() {  # PTB validation as .jsonl rows of 10 sentences, " "-joined like blockprune's PTB test text
    mkdir -p "$OUT"
    [ -f "$OUT/ptb_valid_rows.jsonl" ] || python - "$DATA/perplexity/ptb_valid.txt" "$OUT/ptb_valid_rows.jsonl" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i in range(0, len(lines), 10):
        f.write(json.dumps({"text": " ".join(lines[i:i + 10])}) + "\n")
PY
}

one() {  # CALIBRATION:METHOD
    local cal=${1%%:*} method=${1##*:}
    local run="$OUT/$cal-$method"
    if [ "$cal" = alpaca ]; then
        [ -f "$run/eval/eval.json" ] || blockprune eval "$ALPACA/$method-n16" "${EVAL[@]}" --out "$run/eval"
        return
    fi
    local state scorer=() resume=()
    state=$(status "$run")
    [ "$method" = shortgpt ] || scorer=(--scorer racing)
    [ "$state" = none ] || resume=(--resume)
    if [ "$state" != done ]; then
        local t0=$SECONDS
        blockprune prune --model smollm2-135m --data-dir "$DATA" --method "$method" --ratio 0.2 \
            --calibration "$OUT/ptb_valid_rows.jsonl" --nsamples 7 --seqlen 128 --seed 42 "${scorer[@]}" \
            --validation heldout --batch-size 8 --no-export --quiet --out "$run" "${resume[@]}"
        echo "$1: search $((SECONDS - t0)) s (this process)"
    fi
    [ -f "$run/eval/eval.json" ] || blockprune eval "$run" "${EVAL[@]}" --out "$run/eval"
}

lane() {
    for job in $1; do
        if [ "$job" = dense ]; then
            [ -f "$OUT/dense/eval/eval.json" ] || blockprune eval --model smollm2-135m "${EVAL[@]}" --out "$OUT/dense/eval"
        else
            one "$job"
        fi
    done
}

ptb_rows
lanes_main domain "$OUT" "$LANE_A" "$LANE_B" "${2:-}"
