#!/bin/sh
# Misses' read speed against the disk's direct-read bandwidth at the same queue depth
# (DiskProbe), docs/performance.md §3b. As root (drops the page cache before each run).
#   B=.build/release/moe sh Benchmarks/reads.sh
B=${B:-.build/release/moe}
GGUF=${GGUF:-/work/bench-models/bench-moe-e16-q4_k.gguf}
STORE=${STORE:-/work/bench-models/bench-l4-q4k.moe}
run() {  # model memory depth
  sync; echo 3 > /proc/sys/vm/drop_caches
  start=$(date +%s)
  "$B" bench "$1" --memory "$2" --read-depth "$3" --prompt-tokens 4 --gen-tokens 4 --repetitions 1 --context 64 --json 2>&1 |
    python3 -c "
import json, sys
t = sys.stdin.read()
if '{' not in t: sys.exit(t.strip())
s = json.JSONDecoder().raw_decode(t, t.index('{'))[0]['expert_store']
r = s['bytesRead'] / s['readSeconds']; d = s.get('diskBytesPerSecond') or 0
print(f'$1 --memory $2 depth {s[\"readDepth\"]}: misses {s[\"misses\"]}, {s[\"bytesRead\"] / 1e9:.2f} GB read at {r / 1e9:.3f} GB/s; '
      f'disk {d / 1e9:.3f} GB/s = {100 * r / d if d else 0:.0f}%; direct I/O {s[\"directIO\"]}; load {open(\"/proc/loadavg\").read().split()[0]}')"
  echo "  ($(( $(date +%s) - start )) s)"
}
run "$GGUF" 1200MB 4
run "$GGUF" 1200MB 1
run "$STORE" 700MB 4
run "$STORE" 700MB 1
