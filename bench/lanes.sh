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

# lanes_main NAME OUT "JOBS A" "JOBS B" [JOBS]: a benchmark's main part. With JOBS, the caller's `lane`
# function runs just those on one thread; otherwise both lanes run side by side, then bench/NAME/table.py
# writes OUT's table and the wall time is printed.
lanes_main() {
    local name=$1 out=$2 start=$SECONDS
    if [ -n "${5:-}" ]; then
        OMP_NUM_THREADS=1 lane "$5"
        return
    fi
    two_lanes "$out" lane "$3" "$4" || return 1
    python "bench/$name/table.py" "$out"
    echo "bench/$name: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s in all (this invocation)"
}
