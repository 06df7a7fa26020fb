#!/usr/bin/env bash
# libFuzzer runs of SwiftMoE's parsers (docs/fuzzing.md).
#
#   tools/fuzz.sh TARGET MINUTES   fuzz one target (gguf, hf, store, trace, tokenizer, spm, vocab,
#                                  template, bitplan, calibration) for MINUTES minutes
#   tools/fuzz.sh all SECONDS      every target for SECONDS seconds each (CI: a few seconds)
#   tools/fuzz.sh background HOURS [CPU_SECONDS]
#                                  long runs: every target detached (setsid, nice 19), each in
#                                  10-minute libFuzzer segments (a crash is saved and fuzzing
#                                  goes on) until HOURS of wall time or CPU_SECONDS of CPU
#                                  (default 3600) have passed; PIDs in FUZZ_OUT/PIDS.
#                                  tools/fuzz_status.sh prints CPU time and executions so far.
#   tools/fuzz.sh build            only build the harnesses
#   tools/fuzz.sh list             the targets
#
# Builds tools/fuzz (a package of its own: the main Package.swift has no sanitizer flags) in
# release with -sanitize=fuzzer,address into .build-fuzz. Seeds come from Tests/Fuzz/TARGET,
# dictionaries from tools/fuzz/dictionaries. Each run keeps its corpus, crashes and log under
# FUZZ_OUT/TARGET (default .build-fuzz/runs); the crash directory is printed. Exits 1 if any
# target crashed, timed out (> FUZZ_TIMEOUT s on one input, default 10) or went past
# FUZZ_RSS_MB (default 2048). Extra libFuzzer flags: FUZZ_FLAGS. FUZZ_CONFIG=debug builds
# without optimization (faster to compile, slower to run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
targets=(gguf hf store trace tokenizer spm vocab template bitplan calibration)
config=${FUZZ_CONFIG:-release}
scratch=${FUZZ_SCRATCH:-$root/.build-fuzz}
out=${FUZZ_OUT:-$scratch/runs}
# Leaks are not what this looks for (and swift-foundation's file reading leaks a buffer on an
# empty file); crashes, traps, timeouts and running out of memory are.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
# libFuzzer prints the stack of a crash; Swift's own backtracer would only add noise and time.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# cpu DIR: CPU seconds of a target's background run so far (finished segments + the live one).
cpu() {
    local done live=0 pid
    done=$(awk '{ s += $1 + $2 } END { printf "%d", s }' "$1/cpu.txt" 2>/dev/null || echo 0)
    pid=$(cat "$1/current.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
        live=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) / hz }' "/proc/$pid/stat")
    fi
    echo $(( done + live ))
}

# loop TARGET HOURS BUDGET: the body of one background run.
loop() {
    local target=$1 end=$(( $(date +%s) + $2 * 3600 )) budget=$3 dir="$out/$1" n=0
    mkdir -p "$dir/corpus" "$dir/crashes"
    n=$(ls "$dir" | grep -c '^log\.[0-9]*\.txt$' || true)  # a restarted run keeps the earlier segments' logs
    local dict=()
    [ -f "tools/fuzz/dictionaries/$target.dict" ] && dict=(-dict="tools/fuzz/dictionaries/$target.dict")
    while [ "$(date +%s)" -lt "$end" ] && [ "$(cpu "$dir")" -lt "$budget" ]; do
        n=$(( n + 1 ))
        # The harness may be mid-rebuild (a fixed parser): the next segment runs the new one.
        [ -x "$bin/fuzz-$target" ] || { sleep 30; continue; }
        # Slow units (libFuzzer's report of an input over 10 s of wall time, which a loaded or
        # paused machine produces) are kept but not counted as crashes.
        [ "$(ls "$dir/crashes" | grep -vc '^slow-unit-')" -lt 50 ] || { echo "50 crashes: stopping" >>"$dir/status.txt"; break; }
        /usr/bin/time -a -o "$dir/cpu.txt" -f "%U %S" "$bin/fuzz-$target" "$dir/corpus" "Tests/Fuzz/$target" "${dict[@]}" \
            -max_total_time=600 -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
            -artifact_prefix="$dir/crashes/" -print_final_stats=1 -detect_leaks=0 >"$dir/log.$n.txt" 2>&1 &
        local t=$!
        sleep 1
        pgrep -P "$t" >"$dir/current.pid" || true
        wait "$t" || true
        echo "segment $n ended $(date -u +%H:%M:%S), cpu $(cpu "$dir") s" >>"$dir/status.txt"
        sleep 2
    done
    rm -f "$dir/current.pid"
    echo "finished $(date -u +%H:%M:%S)" >>"$dir/status.txt"
}

build() {
    swift build -c "$config" --package-path tools/fuzz --scratch-path "$scratch" \
        -Xswiftc -sanitize=fuzzer,address >&2
    bin="$scratch/$config"
}

# run TARGET SECONDS: one libFuzzer run; returns its status.
run() {
    local target=$1 seconds=$2 dir="$out/$1"
    mkdir -p "$dir/corpus" "$dir/crashes"
    local dict=()
    [ -f "tools/fuzz/dictionaries/$target.dict" ] && dict=(-dict="tools/fuzz/dictionaries/$target.dict")
    echo "fuzz $target for ${seconds}s: crashes go to $dir/crashes/ (log $dir/log.txt)"
    local status=0
    # shellcheck disable=SC2086
    "$bin/fuzz-$target" "$dir/corpus" "Tests/Fuzz/$target" "${dict[@]}" \
        -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
        -artifact_prefix="$dir/crashes/" -print_final_stats=1 -detect_leaks=0 ${FUZZ_FLAGS:-} >"$dir/log.txt" 2>&1 || status=$?
    grep -E '^stat::number_of_executed_units|^Done ' "$dir/log.txt" | tr '\n' ' ' | sed "s/^/  $target: /"
    echo
    if [ $status -ne 0 ]; then
        echo "  $target FAILED (status $status); the input is in $dir/crashes/:" >&2
        ls "$dir/crashes/" >&2
        grep -m1 -E 'ERROR: |==ERROR|Fatal error|fuzz: unusable' "$dir/log.txt" >&2 || tail -20 "$dir/log.txt" >&2
    fi
    return $status
}

[ $# -ge 1 ] || usage
case $1 in
    list) printf '%s\n' "${targets[@]}"; exit 0 ;;
    build) build; exit 0 ;;
    _loop) bin="$scratch/$config"; loop "$2" "$3" "$4"; exit 0 ;;
    _cpu) cpu "$2"; exit 0 ;;
    background)
        [ $# -ge 2 ] || usage
        build
        mkdir -p "$out"
        for t in "${targets[@]}"; do
            mkdir -p "$out/$t"
            FUZZ_OUT="$out" setsid nohup nice -n 19 "$0" _loop "$t" "$2" "${3:-3600}" >>"$out/$t/status.txt" 2>&1 < /dev/null &
            echo "$t $!" >>"$out/PIDS"
            echo "started $t (pid $!): $out/$t/"
        done ;;
    all)
        [ $# -eq 2 ] || usage
        build
        failed=()
        for t in "${targets[@]}"; do run "$t" "$2" || failed+=("$t"); done
        if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: crashes in ${failed[*]} (see $out/TARGET/crashes/)" >&2; exit 1; fi
        echo "fuzz: ${#targets[@]} targets, no crash" ;;
    *)
        [ $# -eq 2 ] || usage
        printf '%s\n' "${targets[@]}" | grep -qx "$1" || { echo "unknown target $1 (tools/fuzz.sh list)" >&2; exit 2; }
        build
        run "$1" $(( $2 * 60 )) ;;
esac
