#!/usr/bin/env bash
# The ARM64 kernels (Sources/CKernels/simd_arm.c, simd_arm_q8k.c) against the scalar reference, on an x86 machine:
# cross-compiles Sources/CKernels/*.c with tools/arm/kernel_check.c for aarch64 (gcc, and the Swift
# toolchain's clang when present: the compiler SwiftPM uses), runs the result under qemu-user with
# three CPU models so every dispatch level runs (cortex-a53/a72: NEON only; neoverse-n1/cortex-a76:
# + dotprod; max: + i8mm), then runs the same check natively (the x86 levels). Prints a table and
# exits 1 on any mismatch. qemu checks correctness only; its speed says nothing about a real core.
#
# Installs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user with apt-get when missing
# (~30 s); when apt-get cannot run (not root, no sudo, no apt) it says SKIPPED and exits 0.
# Called by .ci/run before the Swift tests. Output: .build/arm-check/. On an ARM64 machine it
# just builds and runs the harness natively (every level up to that CPU's).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.build/arm-check
mkdir -p "$out"
sources=(Sources/CKernels/*.c tools/arm/kernel_check.c)
include=(-ISources/CKernels/include)
# kernel_check.c also checks moe_matmul_qa (q8_K activations) when the header defines
# MOE_KERNELS_Q8K. If that part no longer compiles against the header, say so and leave it out.
if ! ${CC:-cc} -fsyntax-only -w "${include[@]}" tools/arm/kernel_check.c 2>/dev/null; then
    echo "WARNING: tools/arm/kernel_check.c's q8_K part does not compile against moe_kernels.h;" \
         "checking without it (moe_matmul_qa NOT checked). Update kernel_check.c."
    include+=(-DMOE_NO_Q8K_CHECK)
fi

# On an ARM64 machine (Linux or macOS) the harness runs natively: every level up to this CPU's.
case "$(uname -m)" in
aarch64 | arm64)
    ${CC:-cc} -O2 -w "${include[@]}" "${sources[@]}" -lm -o "$out/kernel_check-native"
    "$out/kernel_check-native" "native $(uname -sm)"
    exit $?
    ;;
esac

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
    fi
    if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "SKIPPED: the ARM kernel check needs ${need[*]} and apt-get cannot install them here" \
             "(not root, no passwordless sudo, or no apt). The NEON kernels were NOT checked."
        exit 0
    fi
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update only when the first try fails.
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

# Compilers: (name, command). -O2 and no -march: dotprod and i8mm are reached by run-time dispatch.
compilers=("gcc" "aarch64-linux-gnu-gcc")
clang=""
if command -v swift >/dev/null 2>&1 && [ -x "$(dirname "$(readlink -f "$(command -v swift)")")/clang" ]; then
    clang="$(dirname "$(readlink -f "$(command -v swift)")")/clang"
elif command -v clang >/dev/null 2>&1; then
    clang="$(command -v clang)"
fi
[ -n "$clang" ] && compilers+=("clang" "$clang --target=aarch64-linux-gnu")

status=0
rows=()
run() {  # label expected-level command...
    local label=$1 expected=$2
    shift 2
    if "$@" "$label" "$expected" >"$out/$label.log" 2>&1; then
        rows+=("$(printf '%-28s %-9s ok' "$label" "$expected")")
    else
        rows+=("$(printf '%-28s %-9s FAILED (see below)' "$label" "$expected")")
        status=1
    fi
}
# The builds run in parallel (a minute of compiling on a busy 2-core machine otherwise).
host_cc=${clang:-cc}
pids=()
for ((i = 0; i < ${#compilers[@]}; i += 2)); do
    # shellcheck disable=SC2086 # the compiler entry is a command with arguments
    ${compilers[i + 1]} -O2 -w "${include[@]}" "${sources[@]}" -lm -o "$out/kernel_check-${compilers[i]}" &
    pids+=($!)
done
$host_cc -O2 -w "${include[@]}" "${sources[@]}" -lm -o "$out/kernel_check-host" &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done

for ((i = 0; i < ${#compilers[@]}; i += 2)); do
    name=${compilers[i]}
    if [ "$name" = gcc ]; then cpus=("cortex-a53:1" "neoverse-n1:2" "max:3"); else cpus=("cortex-a72:1" "cortex-a76:2" "max:3"); fi
    for entry in "${cpus[@]}"; do
        run "aarch64-$name-${entry%%:*}" "${entry##*:}" qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "${entry%%:*}" "$out/kernel_check-$name"
    done
done

# The same harness natively: x86's hand-written levels (clang only: simd_x86.c needs it).
run "$(uname -m)-native-$(basename "$host_cc")" "" "$out/kernel_check-host"

# One full per-type table (every ARM level), then the summary.
cat "$out/aarch64-gcc-max.log"
echo
echo "ARM64 kernels vs the scalar reference (qemu-user: correctness only, not speed)"
printf '%-28s %-9s %s\n' "build / cpu model" "level" "result"
printf '%s\n' "${rows[@]}"
for log in "$out"/*.log; do
    if grep -q "^FAILED\|^FAIL" "$log"; then
        echo "--- $log"
        cat "$log"
    fi
done
[ $status -eq 0 ] && echo "every kernel level matches the scalar reference (full tables: $out/*.log)"
exit $status
