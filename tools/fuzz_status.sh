#!/usr/bin/env bash
# The table docs/fuzzing.md reports: per target of a `tools/fuzz.sh background` run, CPU seconds
# so far (finished segments from cpu.txt + the live libFuzzer process from /proc), executions
# (each segment's final count, or its last status line while it runs), corpus size, crashes
# (crash, timeout and out-of-memory inputs; libFuzzer's slow-unit reports are not counted).
#   tools/fuzz_status.sh [DIR]     DIR: FUZZ_OUT of the run (default /work/fuzz-runs, else .build-fuzz/runs)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${FUZZ_OUT:-/work/fuzz-runs}}
[ -d "$dir" ] || dir=.build-fuzz/runs
echo "fuzz runs in $dir, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '| %-11s | %-8s | %8s | %11s | %6s | %7s |\n' target state "CPU s" executions corpus crashes
printf '|%s|%s|%s|%s|%s|%s|\n' -------------  ---------- ---------- ------------- -------- ---------
for t in $(tools/fuzz.sh list); do
    d="$dir/$t"
    [ -d "$d" ] || continue
    execs=0
    for log in "$d"/log.*.txt; do
        [ -f "$log" ] || continue
        n=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | awk '{ print $2 }' | tail -1 || true)
        [ -n "$n" ] || n=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | tail -1 || true)
        execs=$(( execs + ${n:-0} ))
    done
    state=finished
    pid=$(awk -v t="$t" '$1 == t { p = $2 } END { print p }' "$dir/PIDS" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then state=running; fi
    printf '| %-11s | %-8s | %8s | %11s | %6s | %7s |\n' "$t" "$state" "$(FUZZ_OUT="$dir" tools/fuzz.sh _cpu "$d")" "$execs" \
        "$(ls "$d/corpus" 2>/dev/null | wc -l)" "$(ls "$d/crashes" 2>/dev/null | grep -vc '^slow-unit-')"
done
