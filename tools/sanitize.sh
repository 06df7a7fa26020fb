#!/usr/bin/env bash
# Runs the test suite under a sanitizer, in its own scratch path so the normal .build stays as it is:
#   tools/sanitize.sh [--core] address [FILTER]   -> swift test --sanitize=address in .build-asan
#   tools/sanitize.sh [--core] thread  [FILTER]   -> swift test --sanitize=thread  in .build-tsan
# FILTER is passed to `swift test --filter` (a regular expression over Target.Class/test).
# Without it the whole suite runs. docs/reliability.md has the measured times and the
# concurrency-focused filter used there.
# --core: every test target except CLITests and ServingTests, built without `moe serve` and the
# command line, whose dependencies (SwiftNIO, two BoringSSLs, Hummingbird, AsyncHTTPClient)
# are most of a sanitizer build. Builds a shadow package in .build-{asan,tsan}-core/package:
# symlinks to this checkout's directories and our Package.swift with
# tools/sanitize/core-filter.swift appended (it removes those targets and the dependencies).
# Environment: SANITIZE_JOBS (build jobs, default 2), SANITIZE_NICE (default 10).
# TSan reports every race it sees and the run exits non-zero at the end (halt_on_error=0:
# one slow run shows all of them); ASan stops at the first error (it cannot go on).
# Suppressions (documented in docs/reliability.md) live in tools/sanitize/*.supp.
# Not part of .ci/run: too slow for it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
core=0
if [ "${1:-}" = --core ]; then core=1; shift; fi
kind=${1:-}
filter=${2:-}
case "$kind" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "usage: tools/sanitize.sh [--core] address|thread [FILTER]" >&2; exit 2 ;;
esac
package=$root
if [ $core = 1 ]; then
    package=$root/$scratch-core/package
    scratch=$scratch-core/build
    mkdir -p "$package"
    for entry in "$root"/*; do
        name=$(basename "$entry")
        case "$name" in Package.swift|Package.resolved) continue ;; esac
        ln -sfn "$entry" "$package/$name"
    done
    cat Package.swift tools/sanitize/core-filter.swift > "$package/Package.swift.new"
    # Rewritten only when it changes, so SwiftPM keeps its manifest cache.
    cmp -s "$package/Package.swift.new" "$package/Package.swift" 2>/dev/null \
        && rm "$package/Package.swift.new" || mv "$package/Package.swift.new" "$package/Package.swift"
fi
jobs=${SANITIZE_JOBS:-2}
nice_level=${SANITIZE_NICE:-10}
supp_dir=$root/tools/sanitize
# Reports go to files, one per process (log_path: NAME.PID), not to stderr: the `moe` processes
# the tests spawn are built with the sanitizer too, and their stderr is captured by the test (a
# test that only checks for a non-zero exit would let a report pass). Every report is printed
# after the run and fails it.
reports=$root/$scratch/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$supp_dir/tsan.supp:log_path=$reports/tsan${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# Heavy, env-gated tests stay off; they add nothing a sanitizer needs and take minutes.
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "sanitize $kind: $( [ $core = 1 ] && echo core || echo whole package ), load average $(load), $(nproc) cores"
start=$(date +%s)
nice -n "$nice_level" swift build --package-path "$package" --build-tests --sanitize="$kind" --scratch-path "$scratch" -j "$jobs"
built=$(date +%s)
echo "sanitize $kind: build $((built - start)) s, load average $(load)"
args=(--package-path "$package" --skip-build --sanitize="$kind" --scratch-path "$scratch")
[ -n "$filter" ] && args+=(--filter "$filter")
# --core has no `moe` executable: the tests that run it are skipped (they would fail with "the
# moe executable is not built"; two of them first build a model for minutes under a sanitizer).
[ $core = 1 ] && args+=(--skip 'MemoryBudgetTests|WaveBudgetTests|TraceTuneCLITests|testCalibrateProxyThenPlanThroughTheCommandLine|testCalibrateThenPlanThroughTheCommandLine|testPerplexityTargetIsMetOnTheCalibrationText|testRecommendationRespectsTheBudgetAndRuns')
# Under ASan the process's baseline RSS (shadow memory: ~685 MiB in the test process, ~85 MiB in
# `moe`) is above these tests' --memory budgets (200 MiB; 72 MB for `moe generate`), so the
# budget check refuses the model before what the test is about.
[ "$kind" = address ] && args+=(--skip 'testCalibrationRoundTripsAndRejectsGarbage|testPagingEqualsResidentAndOnlyRoutedExpertsArePaged')
status=0
nice -n "$nice_level" swift test "${args[@]}" || status=$?
for report in "$reports"/*; do
    [ -e "$report" ] || continue
    echo "==== sanitizer report $report"
    cat "$report"
    status=1
done
echo "sanitize $kind: $(find "$reports" -type f | wc -l) report file(s) in $reports"
echo "sanitize $kind: tests $(( $(date +%s) - built )) s, exit $status, load average $(load)"
exit $status
