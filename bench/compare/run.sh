#!/usr/bin/env bash
# Method comparison on SmolLM2-135M at a 20% target ratio, recorded in bench/RESULTS.md, under one of two
# protocols:
#
#   bash bench/compare/run.sh [OUT [METHODS]]                 (quick: issue 5's comparison)
#   PROTOCOL=paper bash bench/compare/run.sh [OUT [METHODS]]  (paper: issue 19's, at the paper's calibration)
#
# Re-run to resume: finished searches and evaluations are kept, a killed search continues from its last step.
# With no METHODS, the methods run in two lanes side by side, one process (one thread) per core of this
# 2-core machine, into the same OUT, each method in its own subfolder; lane A evaluates the dense model
# after its first search. Each lane logs to OUT/lane-*.log; a last pass over the whole list only assembles
# OUT/comparison.md (everything is done by then) and prints it. With METHODS, one process runs just those.
#
# quick (OUT bench/compare/smollm2-r20): Alpaca, 4 rows sampled with seed 42, 128-token windows (3 windows,
#   384 tokens), scorer incremental; small because the greedy searches score ~2700 candidate-windows each on
#   a 2-core CPU. Evaluation: the standard quick subset (blockprune.evaluate.QUICK_WINDOWS / QUICK_DOCS): the
#   first 8 WikiText-2 windows of 2048 tokens and the first 100 documents of each of the five zero-shot tasks.
# RATIO (default 0.2) sets the target ratio; the paper protocol's default OUT then names it (RATIO=0.1:
# bench/compare/smollm2-r10-paper), e.g. `RATIO=0.3 PROTOCOL=paper bash bench/compare/run.sh "" layer-ppl`.
# paper (OUT bench/compare/smollm2-r20-paper): the calibration `blockprune prune` uses by default, 256 Alpaca
#   rows in 2048-token windows, seed 42; scorer racing, the fastest here that decides like exhaustive scoring
#   (its replay: bench/RESULTS.md "Search speed"; one-shot ranks by complete scores, so it runs incremental);
#   the overfitting monitor on (held-out Alpaca rows). Evaluation: the whole WikiText-2 and PTB tests in
#   2048-token windows and the first 300 documents of each zero-shot task. Hours of compute on a 2-core CPU:
#   run it in the background, and again after an interruption. The population search (blockpruner-evo) runs
#   GENERATIONS (default 25) generations: about 6 min each here, so the default 40 would take its search
#   past greedy BlockPruner's 3.5 h (issue 30's time target).
# Both evaluate every method and the dense model alike (lm-eval on the offline copies).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${BLOCKPRUNE_DATA:-../shared/data}
case "${PROTOCOL:-quick}" in
    quick)
        OUT=${1:-bench/compare/smollm2-r20}
        [ "${RATIO:-0.2}" = 0.2 ] || { echo "the quick protocol is recorded at RATIO 0.2 only" >&2; exit 2; }
        ALL=shortgpt,relative-magnitude,blockpruner,blockpruner-oneshot,layer-ppl,blockpruner-refined,blockpruner:bi,blockpruner:rm,blockpruner:js
        LANE_A=shortgpt,relative-magnitude,blockpruner-oneshot,layer-ppl,blockpruner:bi,blockpruner:rm
        LANE_B=blockpruner,blockpruner-refined,blockpruner:js  # the long greedy searches
        SETTINGS=(--calibration alpaca --nsamples 4 --seqlen 128 --seed 42 --batch-size 8 --scorer incremental) ;;
    paper)
        OUT=${1:-bench/compare/smollm2-r$(printf %02d "$(python3 -c "print(round(100 * ${RATIO:-0.2}))")")-paper}
        ALL=shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined,blockpruner-joint,blockpruner-evo
        LANE_A=shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner-joint
        LANE_B=blockpruner,blockpruner-refined,blockpruner-evo  # the long block searches; evo is seeded by lane A's
        SETTINGS=(--scorer racing --tasks wikitext2,ptb,piqa,winogrande,hellaswag,arc_easy,arc_challenge
                  --max-windows 0 --limit 300 --generations "${GENERATIONS:-25}") ;;
    *) echo "PROTOCOL must be quick or paper (got $PROTOCOL)" >&2; exit 2 ;;
esac

# the dense model is the same at every ratio: another ratio's paper-protocol folder takes the 20% comparison's
# evaluation of it (compare keeps an eval.json whose tasks and settings match) instead of an hour redoing it
DENSE=bench/compare/smollm2-r20-paper/dense/eval.json
if [ "${PROTOCOL:-quick}" = paper ] && [ ! -e "$OUT/dense/eval.json" ] && [ -e "$DENSE" ]; then
    mkdir -p "$OUT/dense" && cp "$DENSE" "$OUT/dense/eval.json"
fi
# likewise greedy BlockPruner below 20%: a greedy search takes a smaller budget's steps alike until the budget
# binds, so its folder starts from the 20% run's saved state (plan and step times, no evaluation); compare
# resumes it, and prune's resume keeps the steps a fresh run at this ratio shares and searches on from there
GREEDY=bench/compare/smollm2-r20-paper/blockpruner
if [ "${PROTOCOL:-quick}" = paper ] && [ ! -e "$OUT/blockpruner/plan.json" ] && [ -e "$GREEDY/plan.json" ] \
        && python3 -c "import sys; sys.exit(not ${RATIO:-0.2} < 0.2)"; then
    mkdir -p "$OUT/blockpruner" && cp "$GREEDY/plan.json" "$GREEDY/timings.json" "$OUT/blockpruner/"
fi

compare() {
    blockprune compare --model smollm2-135m --data-dir "$DATA" --ratio "${RATIO:-0.2}" --methods "$1" "${SETTINGS[@]}" --out "$OUT"
}

if [ -n "${2:-}" ]; then
    compare "$2"
    exit
fi
start=$SECONDS
. bench/lanes.sh
two_lanes "$OUT" compare "$LANE_A" "$LANE_B" || exit 1
compare "$ALL"
echo "bench/compare: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s in all (this invocation)"
