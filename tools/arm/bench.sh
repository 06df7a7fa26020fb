#!/usr/bin/env bash
# The ARM64 kernels' speed in one command, for someone with an ARM64 machine (Linux, Android or
# a Mac): one thread's read bandwidth, then Benchmarks/kernels/ab.c's table (decode GB/s and
# prefill throughput per type) at every kernel level the CPU has (i8mm, dotprod, NEON, portable C).
#
#     tools/arm/bench.sh [ab.c options: --kb 65536 --tokens 32 --columns 4096 --types q4_K,q8_0]
#
# On an ARM64 machine it builds with ${CC:-cc} -O2 (Apple's clang on a Mac) and runs. On any other
# machine it cross-builds static aarch64 Linux binaries into .build/arm-bench/ (gcc-aarch64-linux-gnu;
# apt-get installs it when missing and allowed) to copy to an ARM64 Linux or Android device:
#     scp -r .build/arm-bench device: && ssh device arm-bench/run.sh
# It never times them under qemu: qemu translates every instruction, so its times say nothing
# about an ARM core. --kb 384 keeps the weights in L2 (compute speed); the default 64 MB streams
# them from DRAM (decode as it runs). Name the CPU next to any number you quote.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.build/arm-bench && mkdir -p "$out"
ab=(-O2 -w -ISources/CKernels/include Sources/CKernels/*.c Benchmarks/kernels/ab.c -lm)  # the benchmark's build

# run.sh: what to run on the device (also copied next to the cross-built binaries).
cat >"$out/run.sh" <<'EOF'
#!/bin/sh
# Runs the ARM64 kernel benchmark built by tools/arm/bench.sh; arguments go to ab (see there).
here=$(cd "$(dirname "$0")" && pwd)
cpu=$(sysctl -n machdep.cpu.brand_string 2>/dev/null || lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1 || true)
echo "CPU: ${cpu:-unknown} ($(uname -sm))"
"$here/bandwidth"
for level in 3 2 1 0; do
    "$here/ab" --level "$level" "$@"
done
EOF
chmod +x "$out/run.sh"

case "$(uname -m)" in
aarch64 | arm64)
    ${CC:-cc} "${ab[@]}" -o "$out/ab"
    ${CC:-cc} -O2 -w tools/arm/bandwidth.c -o "$out/bandwidth"
    exec "$out/run.sh" "$@"
    ;;
esac

if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || [ ! -e /usr/aarch64-linux-gnu/lib/libc.a ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
    echo "installing gcc-aarch64-linux-gnu and libc6-dev-arm64-cross"
    $SUDO apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null ||
        { echo "cannot install the aarch64 cross compiler here; on an ARM64 machine run this script there"; exit 1; }
fi
# Static: runs on any ARM64 Linux (and Android) without a matching C library.
aarch64-linux-gnu-gcc -static "${ab[@]}" -o "$out/ab"
aarch64-linux-gnu-gcc -O2 -w -static tools/arm/bandwidth.c -o "$out/bandwidth"
echo "built $out/{ab,bandwidth,run.sh} (static aarch64 Linux). On an ARM64 device:"
echo "    scp -r $out device: && ssh device arm-bench/run.sh $*"
echo "(not run here: qemu timings say nothing about an ARM core's speed)"
