#!/usr/bin/env bash
# The depth rows of bench/width's table evaluated with a width run's own settings, where the paper-calibration
# depth comparison holds the searches but evaluated them otherwise (e.g. at 10% under EVAL=quick, where
# bench/compare/smollm2-r10-paper's evaluation is the full protocol):
#
#   bash bench/width/depth.sh OUT SRC DEPTH
#   e.g. bash bench/width/depth.sh bench/width/smollm2-r10-paper bench/compare/smollm2-r10-paper \
#            bench/compare/smollm2-r10-paper-quick
#   then DEPTH=bench/compare/smollm2-r10-paper-quick PROTOCOL=paper RATIO=0.1 EVAL=quick bash bench/width/run.sh
#
# SRC's finished greedy searches (layer-ppl, blockpruner-joint, blockpruner: hours of search each) are copied
# into DEPTH without their evaluation, the one-shot ones (shortgpt, relative-magnitude: minutes) are searched
# there, and one `blockprune compare` (one thread) evaluates them all with OUT's settings: its ratio, the
# calibration every depth comparison uses (256 Alpaca rows, seed 42, 2048-token windows; compare refuses a
# copied search made otherwise) and OUT's dense evaluation settings (OUT/dense/eval.json, copied to DEPTH: the
# same model evaluated alike). Re-run to resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$1 SRC=$2 DEPTH=$3
DATA=${BLOCKPRUNE_DATA:-../shared/data}
MODEL=${MODEL:-smollm2-135m}
TASKS=wikitext2,ptb,piqa,winogrande,hellaswag,arc_easy,arc_challenge
[ -f "$OUT/dense/eval.json" ] || { echo "$OUT/dense/eval.json is missing: run bench/width/run.sh first" >&2; exit 2; }
read -r RATIO SEQLEN WINDOWS DOCS < <(python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
s = json.load(open(out / "dense" / "eval.json"))["settings"]
plans = [json.load(open(p)) for p in sorted(out.glob("*/plan.json"))]
if not plans:
    sys.exit(f"{out} holds no finished width run")
print(plans[0]["options"]["ratio"], s["seqlen"], s["max_windows"] or 0, s["limit"])
PY
)
mkdir -p "$DEPTH/dense"
[ -f "$DEPTH/dense/eval.json" ] || cp "$OUT/dense/eval.json" "$DEPTH/dense/eval.json"
methods=shortgpt,relative-magnitude
for m in layer-ppl blockpruner-joint blockpruner; do
    [ "$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$SRC/$m/plan.json" 2>/dev/null)" = done ] || continue
    if [ ! -d "$DEPTH/$m" ]; then
        mkdir -p "$DEPTH/$m.part"
        cp "$SRC/$m/plan.json" "$SRC/$m/compare.json" "$DEPTH/$m.part/"
        [ -f "$SRC/$m/timings.json" ] && cp "$SRC/$m/timings.json" "$DEPTH/$m.part/"
        mv "$DEPTH/$m.part" "$DEPTH/$m"
    fi
    methods="$m,$methods"
done
OMP_NUM_THREADS=1 blockprune compare --model "$MODEL" --data-dir "$DATA" --ratio "$RATIO" --methods "$methods" \
    --calibration alpaca --nsamples 256 --seqlen 2048 --seed 42 \
    --tasks "$TASKS" --eval-seqlen "$SEQLEN" --max-windows "$WINDOWS" --limit "$DOCS" --out "$DEPTH"
