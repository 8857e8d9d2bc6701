#!/usr/bin/env bash
# The calibration-size curve (issue 19, item 4): BlockPruner and ShortGPT on SmolLM2-135M at a 20% ratio,
# calibrated on 4, 16, 64 and 256 Alpaca rows (seed 42), like the BlockPruner paper's Figure 7 (right)
# with ShortGPT beside it. Per run: calibration perplexity, the monitor's validation perplexity (Alpaca
# rows held out from every calibration sample) and WikiText-2 perplexity on the standard quick subset.
#
#   bash bench/calibration_size/run.sh [OUT [JOBS]]   (re-run to resume: finished searches and evaluations
#                                                      are kept, a killed search continues with --resume)
#
# With JOBS ("METHOD:ROWS ..." or "dense", e.g. "dense shortgpt:4 blockpruner:4") one process runs just those, in order, on one
# thread: for a machine whose other core is busy.
#
# Two lanes side by side, one process (one thread) per core of a 2-core machine; each logs to
# OUT/lane-*.log. Lane B holds the long greedy searches (BlockPruner at 256 and 64 rows); lane A the
# one-pass ShortGPT runs and the short searches. At the end, table.py writes OUT/table.md,
# OUT/table.json and OUT/curve.png and prints the table.
#
# Settings (environment): SCORER (default racing: the fastest scorer that decides like exhaustive
# scoring; set it to what bench/RESULTS.md recommends), SEQLEN (default 128: 4 Alpaca rows are ~430
# tokens, too few for one 2048-token window), VAL_ROWS (default 64 validation rows, ~52 windows of 128
# tokens, the same set for every size: one pass per step, tens of percent of a 4-row search step's time and
# about 1% of a 256-row one's), BATCH (default 8 windows per forward pass).
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lanes.sh
DATA=${BLOCKPRUNE_DATA:-../shared/data}
OUT=${1:-bench/calibration_size/smollm2-r20}
SCORER=${SCORER:-racing}
SEQLEN=${SEQLEN:-128}
VAL_ROWS=${VAL_ROWS:-64}
BATCH=${BATCH:-8}
LANE_A="dense shortgpt:4 shortgpt:16 shortgpt:64 shortgpt:256 blockpruner:4 blockpruner:16"
LANE_B="blockpruner:256 blockpruner:64"

one() {  # METHOD:ROWS -> OUT/METHOD-nROWS (search, then WikiText-2 quick)
    local method=${1%%:*} rows=${1##*:}
    local run="$OUT/$method-n$rows"
    local scorer=()
    [ "$method" = shortgpt ] || scorer=(--scorer "$SCORER")
    local state
    state=$(status "$run")
    if [ "$state" != done ]; then
        local resume=()
        [ "$state" = none ] || resume=(--resume)
        local t0=$SECONDS
        blockprune prune --model smollm2-135m --data-dir "$DATA" --method "$method" --ratio 0.2 \
            --calibration alpaca --nsamples "$rows" --seqlen "$SEQLEN" --seed 42 "${scorer[@]}" \
            --validation-nsamples "$VAL_ROWS" --batch-size "$BATCH" --no-export --quiet --out "$run" "${resume[@]}"
        echo "$1: search $((SECONDS - t0)) s (this process)"
    fi
    if [ ! -f "$run/eval/eval.json" ]; then
        local t0=$SECONDS
        blockprune eval "$run" --data-dir "$DATA" --tasks wikitext2 --quick --no-cost --out "$run/eval"
        echo "$1: eval $((SECONDS - t0)) s"
    fi
}

dense() {  # the dense model's WikiText-2 (quick subset), once: the table's WikiText-2 ratio starts from it
    [ -f "$OUT/dense/eval/eval.json" ] ||
        blockprune eval --model smollm2-135m --data-dir "$DATA" --tasks wikitext2 --quick --no-cost --out "$OUT/dense/eval"
}

lane() {
    for job in $1; do
        if [ "$job" = dense ]; then dense; else one "$job"; fi
    done
}

lanes_main calibration_size "$OUT" "$LANE_A" "$LANE_B" "${2:-}"
