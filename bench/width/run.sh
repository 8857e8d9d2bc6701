#!/usr/bin/env bash
# Width pruning (LLM-BIP and the published width baselines) beside depth pruning on SmolLM2-135M, through
# `blockprune compare` and `blockprune eval` only (issue 33), under one of two protocols:
#
#   PROTOCOL=paper bash bench/width/run.sh [OUT [METHODS]]             (this project's, at 20%)
#   PROTOCOL=paper RATIO=0.1 EVAL=quick bash bench/width/run.sh        (10%, the quick subset)
#   PROTOCOL=width [RATIO=0.1] bash bench/width/run.sh [OUT [METHODS]] (the width papers' own)
#
# Re-run to resume: finished searches, evaluations and cost figures are kept. With no METHODS, the methods
# run in two lanes side by side, one process (one thread) per core of this 2-core machine, each method in its
# own subfolder of OUT (default bench/width/smollm2-r<PCT>-<PROTOCOL>), one `blockprune compare` per method;
# each lane logs to OUT/lane-*.log. Then, one process on one thread, `blockprune eval` measures every row's
# cost (parameters, KV cache per token, generation speed) into OUT/cost/<folder>, and bench/width/table.py
# prints one table of the width rows and the depth rows (layer-ppl, relative-magnitude, shortgpt,
# blockpruner, blockpruner-joint) of DEPTH (default bench/compare/smollm2-r<PCT>-paper, bench/compare/run.sh's
# paper-calibration depth comparison at this ratio: its rows are shown only where its ratio and evaluation
# settings are this run's; bench/width/depth.sh evaluates its searches with this run's settings elsewhere). With METHODS (comma-separated), one process runs just those, and nothing else. OUT/table.md is the
# record: each compare rewrites OUT/comparison.md with the calibration of its own invocation, which under
# PROTOCOL=width differs by method. Every figure's file names the machine it was measured on (compare.json,
# timings.json and eval.json, the cost figures' included, carry blockprune.machine's records) and the table
# names each row's machines; a re-run keeps every finished figure, so a run resumed on another CPU adds its
# rows beside the others and never measures over them.
#
# Methods: llm-bip (uniform: the same share in every pruned layer, blockprune's default), llm-bip:global (one
# ranking across layers), width-local (= llm-bip under uniform allocation, by construction: one evaluation),
# width-magnitude, wanda-sp (uniform, as its official code), flap:global and flap-nobias:global (FLAP's own
# adaptive structure AL-AM, with and without its bias compensation: the same units), llm-pruner (element-wise
# first-order Taylor, uniform as its block-wise setting). Every width method prunes layers 1..L-2 (blockprune's
# default --layers 1:-1, the first and last stay dense; compare has no per-method --layers) and removes whole KV
# groups (--gqa groups).
#
# paper: calibration as `blockprune prune`'s default, 256 Alpaca rows (seed 42) in 2048-token windows for every
#   method; evaluation (EVAL=full, the default) the whole WikiText-2 and PTB tests in 2048-token windows and the
#   first 300 documents of each of the five zero-shot tasks (bench/compare's paper protocol, so the depth rows
#   are evaluated alike; the dense model's evaluation is taken from DEPTH/dense when its settings are these).
#   About 45 minutes of evaluation a model on one thread: hours in all; run it in the background.
# width: the width papers' protocol: 128-token windows for calibration and perplexity, each method with its
#   paper's calibration size in windows (Wanda-sp: 128 samples; FLAP: 1024; LLM-Pruner: 10; the LLM-BIP family
#   and magnitude as Wanda-sp), drawn from Alpaca here (138, 1162 and 12 rows give 128, 1024 and 11 windows of
#   128 SmolLM2 tokens); evaluation (EVAL=quick, the default) the first 128 windows of 128 tokens of WikiText-2
#   and PTB (the quick subset's tokens: 8 windows of 2048; the whole WikiText-2 test is 2382 such windows, about
#   20 minutes a model on one thread here) and the first 100 documents of each zero-shot task.
# EVAL=quick under paper: the standard quick subset (the first 8 perplexity windows, 100 documents a task).
# MODEL (default smollm2-135m), BLOCKPRUNE_DATA, LIMIT and MAX_WINDOWS (documents a task, perplexity windows:
# override the protocol's, e.g. for a dry run on a tiny checkpoint) are read from the environment.
# Scoring cost (seconds and peak RSS of each width method's scoring pass, LLM-Pruner's gradients included, one
# process each beside a load + forward-pass baseline, under the paper calibration), separately and with the
# machine to itself: OMP_NUM_THREADS=1 python bench/width/scoring_cost.py (its docstring has the options).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
MODEL=${MODEL:-smollm2-135m}
RATIO=${RATIO:-0.2}
PROTOCOL=${PROTOCOL:-paper}
PCT=$(printf %02d "$(python -c "import sys; print(round(100 * float(sys.argv[1])))" "$RATIO")")
DEPTH=${DEPTH:-bench/compare/smollm2-r$PCT-paper}
TASKS=wikitext2,ptb,piqa,winogrande,hellaswag,arc_easy,arc_challenge
LANE_A=llm-bip,width-local,llm-bip:global,width-magnitude
LANE_B=wanda-sp,flap:global,flap-nobias:global,llm-pruner
case "$PROTOCOL" in
    paper) SEQLEN=2048; EVAL=${EVAL:-full} ;;
    width) SEQLEN=128; EVAL=${EVAL:-quick} ;;
    *) echo "PROTOCOL must be paper or width (got $PROTOCOL)" >&2; exit 2 ;;
esac
case "$PROTOCOL/$EVAL" in  # perplexity windows (empty: all of them) and zero-shot documents a task
    paper/full) WINDOWS=; DOCS=300 ;;
    paper/quick) WINDOWS=8; DOCS=100 ;;
    width/quick) WINDOWS=128; DOCS=100 ;;  # as many tokens as paper/quick's 8 windows of 2048
    *) echo "EVAL must be full or quick (got $EVAL; full only under PROTOCOL=paper)" >&2; exit 2 ;;
esac
WINDOWS=${MAX_WINDOWS-$WINDOWS}
DOCS=${LIMIT:-$DOCS}
OUT=${1:-bench/width/smollm2-r$PCT-$PROTOCOL}
mkdir -p "$OUT"

rows_for() {  # calibration rows of a method under this protocol
    if [ "$PROTOCOL" = paper ]; then echo 256; return; fi
    case "$1" in
        flap*) echo 1162 ;;        # FLAP: 1024 windows of 128 tokens
        llm-pruner*) echo 12 ;;    # LLM-Pruner: 10 samples (11 windows)
        *) echo 138 ;;             # Wanda-sp: 128 windows
    esac
}

compare_one() {
    blockprune compare --model "$MODEL" --data-dir "$DATA" --ratio "$RATIO" --methods "$1" \
        --calibration alpaca --nsamples "$(rows_for "$1")" --seqlen "$SEQLEN" --seed 42 \
        --tasks "$TASKS" --eval-seqlen "$SEQLEN" --max-windows "${WINDOWS:-0}" --limit "$DOCS" --out "$OUT"
}

dense_eval() {  # OUT/dense/eval.json, before any compare: two lanes must not both evaluate the dense model
    local part="$OUT/dense/.eval-part"
    [ -f "$OUT/dense/eval.json" ] && return
    mkdir -p "$OUT/dense"
    # the depth comparison's dense evaluation, where it was made with these settings (the same model)
    if python - "$DEPTH/dense/eval.json" "$OUT/dense/eval.json" "$SEQLEN" "${WINDOWS:-}" "$DOCS" "$TASKS" "$MODEL" \
            "$DEPTH/comparison.json" <<'EOF'
import json, os, sys
src, dst, seqlen, windows, docs, tasks, model, comparison = sys.argv[1:]
if not (os.path.exists(src) and os.path.exists(comparison)) or json.load(open(comparison))["model"] != model:
    sys.exit(1)
rec = json.load(open(src))
s = rec["settings"]
want = {"seqlen": int(seqlen), "max_windows": int(windows) if windows else None, "limit": int(docs), "num_fewshot": 0}
have = set(rec["perplexity"]) | set(rec["zero_shot"])
if any(s.get(k) != v for k, v in want.items()) or not set(tasks.split(",")) <= have:
    sys.exit(1)
rec["copied_from"] = src
json.dump(rec, open(dst + ".tmp", "w"), indent=2)
os.replace(dst + ".tmp", dst)
EOF
    then
        echo "bench/width: the dense model's evaluation taken from $DEPTH/dense (same settings)"
        return
    fi
    blockprune eval --model "$MODEL" --data-dir "$DATA" --tasks "$TASKS" --seqlen "$SEQLEN" \
        ${WINDOWS:+--max-windows "$WINDOWS"} --limit "$DOCS" --no-cost --out "$part" \
        || { touch "$OUT/dense/.failed"; return 1; }
    mv "$part/eval.json" "$OUT/dense/eval.json"
    rm -rf "$part"
}

lane() {  # lane METHODS: lane A first evaluates the dense model, lane B waits for it
    local m
    if [ "$1" = "$LANE_A" ]; then
        dense_eval
    else
        until [ -f "$OUT/dense/eval.json" ]; do
            [ -f "$OUT/dense/.failed" ] && { echo "the dense model's evaluation failed: see lane A" >&2; return 1; }
            sleep 20
        done
    fi
    for m in ${1//,/ }; do
        compare_one "$m"
    done
}

cost() {  # cost FOLDER TARGET...: `blockprune eval`'s cost figures for one row, one thread, into OUT/cost/FOLDER
    local name=$1 part="$OUT/cost/$1.part"
    shift
    [ -f "$OUT/cost/$name/eval.json" ] && return
    mkdir -p "$OUT/cost"
    OMP_NUM_THREADS=1 blockprune eval "$@" --data-dir "$DATA" --tasks wikitext2 --seqlen 128 --max-windows 1 \
        --out "$part" > "$OUT/cost/$name.log" 2>&1
    mkdir -p "$OUT/cost/$name"
    mv "$part/eval.json" "$OUT/cost/$name/eval.json"
    rm -rf "$part"
}

. bench/lanes.sh
if [ -n "${2:-}" ]; then
    rm -f "$OUT/dense/.failed"
    dense_eval
    for m in ${2//,/ }; do
        OMP_NUM_THREADS=1 compare_one "$m"
    done
    exit
fi
start=$SECONDS
rm -f "$OUT/dense/.failed"
two_lanes "$OUT" lane "$LANE_A" "$LANE_B" || exit 1
# cost figures after both lanes, one model at a time: the generation timings then share the machine with nothing
# of this benchmark's own
cost dense --model "$MODEL"
for sub in "$OUT"/*/; do
    sub=${sub%/}
    if [ "$(status "$sub")" = done ]; then cost "$(basename "$sub")" "$sub"; fi
done
for sub in $(python bench/width/table.py --depth-folders "$OUT" "$DEPTH"); do  # the depth rows the table shows
    cost "$(basename "$sub")" "$sub"
done
python bench/width/table.py "$OUT" "$DEPTH"
echo "bench/width: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s in all (this invocation)"
