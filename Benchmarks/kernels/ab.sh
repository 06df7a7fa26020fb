#!/bin/sh
# Same-run A/B of the C kernels at two git revisions (default: main against the work tree).
#
#     Benchmarks/kernels/ab.sh [BASE_REV] [ab.c options: --kb 65536 --tokens 32 --types q4_K,q8_0]
#
# Builds Benchmarks/kernels/ab.c against each revision's Sources/CKernels with clang (the
# compiler SwiftPM uses; the hand-written kernels need it) and runs the two binaries
# alternately, twice each, so both see the same machine. --kb 384 keeps the weights in L2
# (the kernels' compute speed); the default 64 MB streams them from DRAM (decode as it runs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base=${1:-main}
[ $# -gt 0 ] && shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base"
git -C "$root" archive "$base" Sources/CKernels | tar -x -C "$work/base"
cc=${CC:-clang}
$cc -O2 -I"$work/base/Sources/CKernels/include" "$work"/base/Sources/CKernels/*.c "$here/ab.c" -lm -o "$work/ab-base"
$cc -O2 -I"$root/Sources/CKernels/include" "$root"/Sources/CKernels/*.c "$here/ab.c" -lm -o "$work/ab-new"
grep -m1 "model name" /proc/cpuinfo || true
for round in 1 2; do
    echo "== $base (round $round)"; "$work/ab-base" "$@"
    echo "== work tree (round $round)"; "$work/ab-new" "$@"
done
