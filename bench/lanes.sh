# Sourced by benchmarks: run a function over two job lists in two one-thread lanes, one per core, and read
# a run folder's state.
# two_lanes OUT FN "JOBS A" "JOBS B": logs go to OUT/lane-a.log and OUT/lane-b.log; returns 1 (naming the
# failed lane's log) when either lane fails.
two_lanes() {
    local out=$1 fn=$2 a b failed=0
    mkdir -p "$out"
    OMP_NUM_THREADS=1 "$fn" "$3" > "$out/lane-a.log" 2>&1 & a=$!
    OMP_NUM_THREADS=1 "$fn" "$4" > "$out/lane-b.log" 2>&1 & b=$!
    wait $a || { echo "lane A ($3) failed: see $out/lane-a.log" >&2; failed=1; }
    wait $b || { echo "lane B ($4) failed: see $out/lane-b.log" >&2; failed=1; }
    return $failed
}

status() {  # status RUN: the status of RUN/plan.json ("running", "done"), or "none" when there is no plan yet
    python -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$1/plan.json" 2>/dev/null || echo none
}
