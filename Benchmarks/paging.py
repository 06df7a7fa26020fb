#!/usr/bin/env python3
"""Paging benchmark: decode speed of SwiftMoE when experts do not fit, against the limits.

For one model (GGUF or .moe), in one run:
  1. the disk's direct-read bandwidth (O_DIRECT reads of the model file, 8 MiB blocks);
  2. all-resident decode (no paging) — the compute-only ceiling;
  3. load-on-demand with no cache (`--expert-cache min`: one layer's active experts);
  4. for each pool size (fractions of the expert bytes), cache policy and predictor:
     decode tokens/s, hit rate, Belady's MIN hit rate on the same accesses, stall time,
     bytes read per token, prediction precision/recall;
  5. the limit for each run: 1 / (all-resident seconds per token + bytes read per token / disk
     bandwidth) — what the run would reach if every read cost exactly its bytes at full disk
     speed and compute ran at the all-resident speed;
  6. optionally llama.cpp on the same file (mmap, everything resident) via Benchmarks/compare.py.

Usage:
  python3 Benchmarks/paging.py MODEL [--moe .build/release/moe] [--threads 2]
      [--fractions 0.25,0.5] [--policies lru,edgemoe] [--prefetch none,lookahead,path,hybrid]
      [--gen-tokens 32] [--prompt-tokens 8] [--repetitions 2] [--calibration FILE]
      [--llama] [--json out.json]
Decode figures come from `moe bench --json` (median over repetitions after a warm-up); the
paging counters cover prefill and decode of the measured runs. The page cache is dropped for
the model file before each run (posix_fadvise DONTNEED), so reads really come from disk.
"""
import argparse
import json
import mmap
import os
import subprocess
import sys
import time


def disk_bandwidth(path, limit=1 << 30, block=8 << 20):
    """GB/s of O_DIRECT sequential reads of `path` (up to `limit` bytes)."""
    drop_cache(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT requires
    total, start = 0, time.perf_counter()
    try:
        while total < limit:
            n = os.preadv(fd, [buf], total)
            if n <= 0:
                break
            total += n
    finally:
        os.close(fd)
    return total / (time.perf_counter() - start) / 1e9


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def moe(args, binary):
    out = subprocess.run([binary] + args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"moe {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
    return out.stdout


def bench(binary, model, a, extra):
    drop_cache(model)
    text = moe(["bench", model, "--json", "--threads", str(a.threads), "--prompt-tokens", str(a.prompt_tokens),
                "--gen-tokens", str(a.gen_tokens), "--repetitions", str(a.repetitions)] + extra, binary)
    return json.loads(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--moe", default=".build/release/moe")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fractions", default="0.25,0.5")
    p.add_argument("--policies", default="lru,edgemoe")
    p.add_argument("--prefetch", default="none,lookahead,path,hybrid")
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--repetitions", type=int, default=2)
    p.add_argument("--calibration")
    p.add_argument("--llama", action="store_true", help="also measure llama.cpp (needs llama-cpp-python)")
    p.add_argument("--json")
    a = p.parse_args()

    inspect = json.loads(moe(["inspect", a.model, "--json"], a.moe))
    expert_bytes = inspect["expertBytes"]
    bw = disk_bandwidth(a.model)
    print(f"model {a.model}: {expert_bytes / 1e6:.1f} MB of experts, {inspect['denseBytes'] / 1e6:.1f} MB dense; "
          f"disk direct read {bw:.2f} GB/s; threads {a.threads}", flush=True)

    resident = bench(a.moe, a.model, a, [])
    t_resident = 1 / resident["decode"]["tokens_per_second"]["median"]
    rows = [{"config": "all resident", "decode_tps": resident["decode"]["tokens_per_second"]["median"]}]

    def run(label, extra):
        r = bench(a.moe, a.model, a, extra)
        m = r.get("expert_store") or {}
        tokens = a.repetitions * (a.gen_tokens + a.prompt_tokens)
        per_token = m.get("bytesRead", 0) / max(tokens, 1)
        row = {"config": label, "decode_tps": r["decode"]["tokens_per_second"]["median"],
               "hit_rate": m.get("hits", 0) / max(m.get("hits", 0) + m.get("misses", 0), 1),
               "stall_s_per_token": m.get("stallSeconds", 0) / max(tokens, 1),
               "read_mb_per_token": per_token / 1e6,
               "limit_tps": 1 / (t_resident + per_token / (bw * 1e9)),
               "prefetch_useful": m.get("prefetchUseful"), "prefetch_wasted": m.get("prefetchWasted"),
               "belady_hit_rate": r.get("paging", {}).get("beladyHitRate"),
               "precision": r.get("paging", {}).get("predictionPrecision"),
               "recall": r.get("paging", {}).get("predictionRecall")}
        rows.append(row)
        print(format_row(row), flush=True)

    run("load on demand (no cache)", ["--expert-cache", "min", "--prefetch", "none"])
    for f in [float(x) for x in a.fractions.split(",")]:
        for policy in a.policies.split(","):
            for prefetch in a.prefetch.split(","):
                extra = ["--expert-cache", f"{f * 100:g}%", "--cache-policy", policy, "--prefetch", prefetch]
                if prefetch in ("path", "hybrid"):
                    if not a.calibration:
                        continue
                    extra += ["--calibration", a.calibration]
                run(f"{f * 100:g}% {policy} {prefetch}", extra)

    if a.llama:
        sys.path.insert(0, os.path.dirname(__file__))
        import compare  # noqa: E402
        spec = {"model": os.path.abspath(a.model), "threads": a.threads, "prompt_tokens": a.prompt_tokens,
                "gen_tokens": a.gen_tokens, "repetitions": a.repetitions, "seed": 0, "warmup": 1}
        llama = compare.run_llama(spec, 3600)
        if "error" in llama:
            print(f"llama.cpp failed: {llama['error']}")
        else:
            tps = llama["decode"]["tokens_per_second"]["median"]
            rows.append({"config": "llama.cpp (mmap, all resident)", "decode_tps": tps})
            print(f"llama.cpp decode {tps:.2f} t/s")

    print()
    print("| config | decode t/s | hit rate | Belady | stall s/token | read MB/token | limit t/s | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join([r["config"], f"{r['decode_tps']:.2f}", pct(r.get("hit_rate")), pct(r.get("belady_hit_rate")),
                                 num(r.get("stall_s_per_token"), 4), num(r.get("read_mb_per_token"), 1), num(r.get("limit_tps"), 2),
                                 pct(r.get("precision")), pct(r.get("recall"))]) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "disk_gbps": bw, "expert_bytes": expert_bytes, "threads": a.threads, "rows": rows}, f, indent=1)


def pct(v):
    return "" if v is None else f"{100 * v:.1f}%"


def num(v, digits):
    return "" if v is None else f"{v:.{digits}f}"


def format_row(r):
    return (f"{r['config']:<34} decode {r['decode_tps']:7.2f} t/s  hit {pct(r.get('hit_rate')):>6}  "
            f"stall {num(r.get('stall_s_per_token'), 4)} s/tok  read {num(r.get('read_mb_per_token'), 1)} MB/tok  "
            f"limit {num(r.get('limit_tps'), 2)} t/s")


if __name__ == "__main__":
    main()
