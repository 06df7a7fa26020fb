#!/usr/bin/env python3
"""Long runs under a memory budget (docs/reliability.md, "Long runs").

Usage:
    python3 Benchmarks/soak/soak.py model [--out /work/bench-models/soak-e64-q4k.gguf]
    python3 Benchmarks/soak/soak.py generate [--moe .build/release/moe] [--model PATH]
        [--tokens 20000] [--memory 160MB] [--threads 2] [--time-limit SECONDS] [--json out.json]
    python3 Benchmarks/soak/soak.py serve [--moe .build/release/moe] [--model /work/bench-models/soak-e64-q4k.gguf]
        [--memory 160MB] [--duration 600] [--clients 2] [--max-queue 8] [--max-tokens 48] [--json out.json]

model: writes a random-weight Mixtral-layout GGUF with many small experts (4 layers x 64 experts
of 512x1024, top-2, Q4_K blocks written directly; 0.24 GB, ~230 MB of experts) and a 32k context,
through tools/make_bench_model.py's writer. Outside git; the same command writes the same bytes.

generate: one `moe generate` process producing --tokens new tokens (one sequence: the KV cache
is planned for all of them) under --memory, its resident set (VmRSS), threads and open file
descriptors sampled every 100 ms from /proc. Fails if the RSS ever exceeds the budget or the
run does not produce the tokens. Reports the peak, the RSS at 10/50/100 % of the run, and the
growth after warm-up (least-squares slope, MB per minute, over the last 90 % of the run).

serve: one `moe serve` under --memory (the soak model by default, so experts page) on 127.0.0.1 (started through Benchmarks/serve/harness.py),
--clients threads sending non-streamed chat requests back to back for --duration seconds
(fewer clients than --max-queue: no request may be refused), RSS/threads/fds sampled every
100 ms. Fails on any failed request, an RSS above the budget, or growth: after the first
minute, the last minute's mean RSS may exceed the second minute's by at most 2 % + 1 MiB, and
threads and fds must not exceed their maximum during the second minute.

Loopback only; every process started here is stopped at the end (also on Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "Benchmarks", "serve"))
sys.path.insert(0, os.path.join(REPO, "tools"))
import harness  # noqa: E402

UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 10**3, "KIB": 1 << 10, "M": 1 << 20, "MB": 10**6, "MIB": 1 << 20,
         "G": 1 << 30, "GB": 10**9, "GIB": 1 << 30}


def parse_bytes(text: str) -> int:
    """The byte count of a --memory value as `moe` reads it (MB = 10^6, MiB and M = 2^20)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in UNITS:
        raise SystemExit(f"error: cannot read the size {text!r}")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


class Sampler:
    """Samples a process's VmRSS, thread count and open fds from /proc every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int, int]] = []  # (seconds, rss bytes, threads, fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.monotonic()

    def _one(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                status = f.read()
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
            threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, AttributeError):
            return None
        return (time.monotonic() - self.start, rss, threads, fds)

    def _run(self):
        while not self._stop.is_set():
            s = self._one()
            if s:
                self.samples.append(s)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def window(self, t0: float, t1: float):
        return [s for s in self.samples if t0 <= s[0] < t1]


def slope_mb_per_minute(samples) -> float:
    """Least-squares slope of RSS over time, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s[0] for s in samples]
    ys = [s[1] / 1e6 for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60


def rss_at(samples, fraction: float) -> int:
    return samples[min(len(samples) - 1, int(fraction * (len(samples) - 1)))][1]


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def cmd_model(args) -> int:
    import make_bench_model as bench
    d = bench.Dims(vocab=2048, hidden=512, layers=4, heads=8, kv_heads=2, experts=64, experts_used=2, expert_ffn=1024, context=32768)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    bench.write_f16(args.out, d, args.seed, direct_q4k=True)
    return 0


def cmd_generate(args) -> int:
    moe = harness.find_moe(args.moe)
    budget = parse_bytes(args.memory)
    cmd = [moe, "generate", args.model, "--tokens", "1,100,200,300", "--max-new", str(args.tokens),
           "--context", str(args.tokens + 8), "--memory", args.memory, "--threads", str(args.threads)] + args.extra
    print("$ " + " ".join(cmd), flush=True)
    load_before = load_average()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    with Sampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=args.time_limit)
        except subprocess.TimeoutExpired:
            # moe generate prints its tokens only at the end: a stopped run reports memory only.
            proc.terminate()
            out, err = proc.communicate()
            stopped = True
    seconds = time.monotonic() - t0
    samples = sampler.samples
    generated = len([t for t in out.strip().split(",") if t]) if proc.returncode == 0 else 0
    peak = max(s[1] for s in samples)
    warm = [s for s in samples if s[0] >= 0.1 * seconds]
    result = {
        "command": " ".join(cmd), "status": proc.returncode, "stopped_at_time_limit": stopped, "tokens": generated, "seconds": round(seconds, 1),
        "tokens_per_second": round(generated / seconds, 1) if seconds else 0, "budget": budget, "peak_rss": peak,
        "rss_10pct": rss_at(samples, 0.1), "rss_50pct": rss_at(samples, 0.5), "rss_end": samples[-1][1],
        "growth_mb_per_min_after_10pct": round(slope_mb_per_minute(warm), 3), "samples": len(samples),
        "threads_max": max(s[2] for s in samples), "fds_max": max(s[3] for s in samples),
        "load_average": f"{load_before} -> {load_average()}", "stderr_tail": err.strip().splitlines()[-3:],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result | {"series": samples[:: max(1, len(samples) // 2000)]}, f)
    failures = []
    if stopped:
        failures.append(f"stopped at the time limit ({args.time_limit:.0f} s) before {args.tokens} tokens")
    elif proc.returncode != 0:
        failures.append(f"moe generate exited {proc.returncode}")
    elif generated < args.tokens:
        failures.append(f"{generated} tokens generated, wanted {args.tokens}")
    if peak > budget:
        failures.append(f"peak RSS {peak} above the budget {budget}")
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


QUESTIONS = ["How do I open a file in Python?", "What does the len function return?", "Explain list comprehensions.",
             "What is a dictionary?", "How do I sort a list of strings?", "What does the with statement do?"]


def cmd_serve(args) -> int:
    moe = harness.find_moe(args.moe)
    budget = parse_bytes(args.memory)
    server = harness.Server(moe, args.model, ["--memory", args.memory, "--max-queue", str(args.max_queue), "--threads", str(args.threads)],
                            name="soak", startup_timeout=120)
    load_before = load_average()
    server.start()
    print("$ " + " ".join(server.command()), flush=True)
    stats = {"ok": 0, "failed": 0, "tokens": 0, "errors": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int):
        n = 0
        while not stop.is_set():
            body = json.dumps({"model": "soak", "max_tokens": args.max_tokens, "temperature": 0,
                               "messages": [{"role": "user", "content": QUESTIONS[(i + n) % len(QUESTIONS)] + f" ({n})"}]}).encode()
            n += 1
            req = urllib.request.Request(f"{server.base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    reply = json.loads(r.read())
                with lock:
                    stats["ok"] += 1
                    stats["tokens"] += reply.get("usage", {}).get("completion_tokens", 0)
            except Exception as e:  # any failure counts; the first few are kept
                with lock:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 5:
                        stats["errors"].append(repr(e))

    with Sampler(server.proc.pid) as sampler:
        workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        for w in workers:
            w.start()
        t_end = time.monotonic() + args.duration
        while time.monotonic() < t_end and server.alive():
            time.sleep(1)
            el = time.monotonic() - sampler.start
            if int(el) % 60 == 0:
                with lock:
                    print(f"  {el:5.0f} s: {stats['ok']} ok, {stats['failed']} failed, RSS {sampler.samples[-1][1] / 1e6:.1f} MB", flush=True)
        stop.set()
        for w in workers:
            w.join(timeout=130)
    alive = server.alive()
    server.stop()
    samples = sampler.samples
    duration = samples[-1][0]
    second = sampler.window(60, 120)
    last = sampler.window(duration - 60, duration + 1)
    mean = lambda xs: sum(s[1] for s in xs) / len(xs) if xs else 0  # noqa: E731
    result = {
        "command": " ".join(server.command()), "duration": round(duration, 1), "clients": args.clients,
        "requests_ok": stats["ok"], "requests_failed": stats["failed"], "errors": stats["errors"],
        "completion_tokens": stats["tokens"], "budget": budget, "peak_rss": max(s[1] for s in samples),
        "rss_mean_minute2": round(mean(second)), "rss_mean_last_minute": round(mean(last)),
        "growth_mb_per_min_after_1min": round(slope_mb_per_minute(sampler.window(60, duration + 1)), 3),
        "threads_minute2_max": max((s[2] for s in second), default=0), "threads_last_max": max((s[2] for s in last), default=0),
        "fds_minute2_max": max((s[3] for s in second), default=0), "fds_last_max": max((s[3] for s in last), default=0),
        "server_alive_at_end": alive, "load_average": f"{load_before} -> {load_average()}", "samples": len(samples),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result | {"series": samples[:: max(1, len(samples) // 2000)]}, f)
    failures = []
    if stats["failed"]:
        failures.append(f"{stats['failed']} failed requests: {stats['errors']}")
    if not alive:
        failures.append("the server died:\n" + server.log_tail())
    if result["peak_rss"] > budget:
        failures.append(f"peak RSS {result['peak_rss']} above the budget {budget}")
    if duration >= 180 and result["rss_mean_last_minute"] > 1.02 * result["rss_mean_minute2"] + (1 << 20):
        failures.append("RSS grew between the second and the last minute")
    if duration >= 180 and (result["threads_last_max"] > result["threads_minute2_max"] or result["fds_last_max"] > result["fds_minute2_max"]):
        failures.append("threads or file descriptors grew")
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model", help="write the soak model (random weights, many experts)")
    m.add_argument("--out", default="/work/bench-models/soak-e64-q4k.gguf")
    m.add_argument("--seed", type=int, default=20261130)
    g = sub.add_parser("generate", help="one long generation under --memory")
    g.add_argument("--moe")
    g.add_argument("--model", default="/work/bench-models/soak-e64-q4k.gguf")
    g.add_argument("--tokens", type=int, default=20000)
    g.add_argument("--memory", default="160MB")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--json")
    g.add_argument("--time-limit", type=float, default=None, help="stop the run after this many seconds (reports memory only)")
    g.add_argument("extra", nargs="*", help="more moe generate options (after --)")
    s = sub.add_parser("serve", help="moe serve under bounded load")
    s.add_argument("--moe")
    s.add_argument("--model", default="/work/bench-models/soak-e64-q4k.gguf")
    s.add_argument("--memory", default="160MB")
    s.add_argument("--duration", type=float, default=600)
    s.add_argument("--clients", type=int, default=2)
    s.add_argument("--max-queue", type=int, default=8)
    s.add_argument("--max-tokens", type=int, default=48)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--json")
    args = ap.parse_args()
    return {"model": cmd_model, "generate": cmd_generate, "serve": cmd_serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
