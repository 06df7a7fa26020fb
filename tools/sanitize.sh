#!/usr/bin/env bash
# Runs the test suite under a sanitizer, in its own scratch path so the normal .build stays as it is:
#   tools/sanitize.sh address [FILTER]   -> swift test --sanitize=address in .build-asan
#   tools/sanitize.sh thread  [FILTER]   -> swift test --sanitize=thread  in .build-tsan
# FILTER is passed to `swift test --filter` (a regular expression over Target.Class/test).
# Without it the whole suite runs (ASan: ~3x the plain suite; TSan: much slower, see
# docs/reliability.md for measured times and the concurrency-focused filter used there).
# Environment: SANITIZE_JOBS (build jobs, default 2), SANITIZE_NICE (default 10).
# Suppressions (documented in docs/reliability.md) live in tools/sanitize/*.supp.
# Not part of .ci/run: too slow for it.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
filter=${2:-}
case "$kind" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "usage: tools/sanitize.sh address|thread [FILTER]" >&2; exit 2 ;;
esac
jobs=${SANITIZE_JOBS:-2}
nice_level=${SANITIZE_NICE:-10}
supp_dir=$(pwd)/tools/sanitize
# halt_on_error: the first report fails the run (and names the test running at the time).
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp_dir/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# Heavy, env-gated tests stay off; they add nothing a sanitizer needs and take minutes.
start=$(date +%s)
nice -n "$nice_level" swift build --build-tests --sanitize="$kind" --scratch-path "$scratch" -j "$jobs"
built=$(date +%s)
echo "sanitize $kind: build $((built - start)) s"
args=(--skip-build --sanitize="$kind" --scratch-path "$scratch")
[ -n "$filter" ] && args+=(--filter "$filter")
status=0
nice -n "$nice_level" swift test "${args[@]}" || status=$?
echo "sanitize $kind: tests $(( $(date +%s) - built )) s, exit $status"
exit $status
