#!/usr/bin/env bash
# The paper protocol, timed: BlockPruner mix at a 20% ratio on SmolLM2 with the prune command's default
# calibration (256 Alpaca rows in 2048-token windows, seed 42), once with racing and once with the default
# scorer (`auto`: two-precision racing where bf16 is native, else incremental). Two lanes, one thread each.
# Resumable: run it again and each search continues from its last finished step (plan.json).
#   bash bench/paper_protocol/run.sh [DATA_DIR]
# The monitor is off (--validation none): this measures the search, and the racing run predates it.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-${BLOCKPRUNE_DATA:-../shared/data}}
run() {  # name, scorer
  local out=bench/paper_protocol/$1 resume=()
  [ -f "$out/plan.json" ] && resume=(--resume)
  OMP_NUM_THREADS=1 blockprune prune --model smollm2-135m --ratio 0.2 --scorer "$2" --validation none \
    --data-dir "$DATA" --no-export --quiet --out "$out" "${resume[@]}" > "bench/paper_protocol/$1.log" 2>&1
}
run racing racing &
run default auto &
wait
python - <<'PY'
import json, pathlib
for name in ("racing", "default"):
    d = pathlib.Path("bench/paper_protocol") / name
    plan, t = json.loads((d / "plan.json").read_text()), json.loads((d / "timings.json").read_text())
    secs = sum(s["seconds"] for s in t["steps"])
    last = plan["steps"][-1] if plan["steps"] else None
    print(f"{name}: scorer {plan['options']['scorer']}, {plan['status']}, {len(plan['steps'])} steps in {secs / 60:.1f} min, "
          f"candidate-windows {sum(s['evaluated_windows'] for s in plan['steps'])}/"
          f"{sum(s['exhaustive_windows'] for s in plan['steps'])}, removed {plan['removed']}, "
          f"ppl {plan['dense']['ppl']:.4f} -> {last['ppl'] if last else plan['dense']['ppl']:.4f}")
PY
