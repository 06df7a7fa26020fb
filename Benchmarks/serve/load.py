#!/usr/bin/env python3
"""Bounded load test of `moe serve` on loopback, with the official `openai` Python client.

Usage:
    python3 Benchmarks/serve/load.py [--moe .build/release/moe] [--model Models/demo/demo.moe]
        [--clients 4] [--max-queue 8] [--duration 30] [--baseline 8] [--max-tokens 32]
        [--burst 24] [--burst-queue 2] [--json out.json] [--markdown]

Two phases against servers it starts on free ports of 127.0.0.1 and stops at the end:

1. Under the queue limit: --clients threads (fewer than --max-queue) each send short streamed
   chat requests back to back (a different question each time, temperature 0, --max-tokens) for
   --duration seconds. Reports request latency p50/p99, time to first token p50/p99, aggregate
   completion tokens/s, per-request decode tokens/s, and the failed requests (must be 0).
2. Above the queue limit: a fresh server with --max-queue --burst-queue gets --burst requests at
   once. Reports how many were answered and how many got 429 (RateLimitError); any other error,
   or a server that no longer answers /health, is a failure.

Before phase 1, one client alone for --baseline seconds gives the latency without queueing.
The whole run is bounded (≤ 60 s with the defaults: 8 s + 30 s + one burst, plus start-ups) and
sends traffic to 127.0.0.1 only. Exit status 1 when a request failed in phase 1, no 429 was seen
in phase 2, anything other than 200/429 came back, or a server died.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

QUESTIONS = [
    "How do I open a file in Python?",
    "What does the len function return?",
    "Explain list comprehensions.",
    "What is a dictionary?",
    "How do I read a line from standard input?",
    "What is the difference between a tuple and a list?",
    "How do I sort a list of strings?",
    "What does the with statement do?",
]


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def one_request(client, model, question, max_tokens):
    """Streams one chat reply; returns (latency, ttft, completion tokens, decode seconds)."""
    t0 = time.perf_counter()
    ttft, tokens, last = None, 0, t0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            if ttft is None:
                ttft = now - t0
            tokens += 1
            last = now
    latency = time.perf_counter() - t0
    if usage is not None:
        tokens = usage.completion_tokens
    if ttft is None:
        ttft = latency
    return latency, ttft, tokens, max(0.0, last - t0 - ttft)


def phase_under_limit(moe, args, clients, duration):
    server = harness.Server(moe, args.model, ["--max-queue", str(args.max_queue)] + args.server_arg,
                            name="load").start()
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60.0)
    model = client.models.list().data[0].id
    one_request(client, model, QUESTIONS[0], 4)  # warm-up, not counted

    results, errors, lock = [], [], threading.Lock()
    stop_at = time.perf_counter() + duration

    def worker(i):
        n = i
        while time.perf_counter() < stop_at:
            q = QUESTIONS[n % len(QUESTIONS)]
            n += clients
            try:
                r = one_request(client, model, q, args.max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 -- counted and reported
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

    other = harness.OtherLoad([server.proc.pid])
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    wall = time.perf_counter() - t0
    other_cores = other.cores()
    alive = server.alive()
    server.stop()

    lat = [r[0] for r in results]
    ttft = [r[1] for r in results]
    toks = sum(r[2] for r in results)
    decode_rates = [(r[2] - 1) / r[3] for r in results if r[2] > 1 and r[3] > 0]
    return {
        "clients": clients, "max_queue": args.max_queue, "duration_s": round(wall, 2),
        "max_tokens": args.max_tokens, "requests": len(results), "failed": len(errors),
        "errors": errors[:5],
        "latency_p50_s": percentile(lat, 50) if lat else None,
        "latency_p99_s": percentile(lat, 99) if lat else None,
        "ttft_p50_s": percentile(ttft, 50) if ttft else None,
        "ttft_p99_s": percentile(ttft, 99) if ttft else None,
        "completion_tokens": toks,
        "tokens_per_s": toks / wall if wall > 0 else None,
        "decode_tokens_per_s_per_request_median": statistics.median(decode_rates) if decode_rates else None,
        "requests_per_s": len(results) / wall if wall > 0 else None,
        "server_alive": alive,
        "other_processes_cores": other_cores,
    }


def phase_over_limit(moe, args):
    server = harness.Server(moe, args.model, ["--max-queue", str(args.burst_queue)] + args.server_arg,
                            name="burst").start()
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60.0)
    model = client.models.list().data[0].id
    outcomes, lock = [], threading.Lock()
    go = threading.Event()

    def worker(i):
        go.wait()
        try:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                max_tokens=args.max_tokens, temperature=0)
            o = "ok"
        except openai.RateLimitError as e:
            o = "429" if e.status_code == 429 else f"RateLimitError {e.status_code}"
        except openai.APIStatusError as e:
            o = f"{type(e).__name__} {e.status_code}"
        except Exception as e:  # noqa: BLE001
            o = f"{type(e).__name__}: {e}"
        with lock:
            outcomes.append(o)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.burst)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join(timeout=90)
    wall = time.perf_counter() - t0
    # Still serving after the burst?
    healthy = False
    try:
        r = client.completions.create(model=model, prompt="x", max_tokens=2)
        healthy = bool(r.choices)
    except Exception:  # noqa: BLE001
        healthy = False
    alive = server.alive()
    server.stop()
    other = [o for o in outcomes if o not in ("ok", "429")]
    return {"burst": args.burst, "max_queue": args.burst_queue, "answered": outcomes.count("ok"),
            "rejected_429": outcomes.count("429"), "other": other, "seconds": round(wall, 2),
            "served_after": healthy, "server_alive": alive}


def fmt(x, unit="", digits=3):
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def print_phase(title, r):
    print(f"{title}: {r['clients']} client(s), --max-queue {r['max_queue']}, "
          f"{r['duration_s']} s: {r['requests']} requests, {r['failed']} failed; "
          f"latency p50 {fmt(r['latency_p50_s'], ' s')} p99 {fmt(r['latency_p99_s'], ' s')}; "
          f"TTFT p50 {fmt(r['ttft_p50_s'], ' s')} p99 {fmt(r['ttft_p99_s'], ' s')}; "
          f"{fmt(r['tokens_per_s'], ' tok/s', 1)} aggregate, "
          f"{fmt(r['decode_tokens_per_s_per_request_median'], ' tok/s', 1)} per request (decode); "
          f"other processes used {fmt(r['other_processes_cores'], ' cores', 2)}", flush=True)
    for e in r["errors"]:
        print(f"  error: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--moe")
    ap.add_argument("--model", default=harness.DEMO_MODEL)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--baseline", type=float, default=8.0,
                    help="seconds of one client alone first (latency without queueing; 0 = skip)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--burst", type=int, default=24)
    ap.add_argument("--burst-queue", type=int, default=2)
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra `moe serve` argument (repeat), e.g. --server-arg=--threads --server-arg=2")
    ap.add_argument("--json")
    ap.add_argument("--markdown", action="store_true", help="print the figures as a docs/serving.md section")
    args = ap.parse_args()
    if args.clients >= args.max_queue:
        ap.error("--clients must stay below --max-queue (phase 1 measures under the limit)")
    if args.burst <= args.burst_queue + 1:
        ap.error("--burst must exceed --burst-queue + 1 to overflow the queue")

    moe = harness.find_moe(args.moe)
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    single = None
    if args.baseline > 0:
        single = phase_under_limit(moe, args, 1, args.baseline)
        print_phase("one client (no queueing)", single)
    under = phase_under_limit(moe, args, args.clients, args.duration)
    print_phase("under the limit", under)
    over = phase_over_limit(moe, args)
    print(f"over the limit: {over['burst']} requests at once, --max-queue {over['max_queue']}: "
          f"{over['answered']} answered, {over['rejected_429']} got 429, other {over['other']}; "
          f"served after the burst: {over['served_after']}", flush=True)
    total = time.perf_counter() - t_start
    print(f"load test: {total:.1f} s")

    command = "python3 Benchmarks/serve/load.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = {"cpu": harness.cpu_model(), "cores": os.cpu_count(), "moe": moe, "command": command.strip(),
              "load_average_before": load_before, "single_client": single,
              "under_limit": under, "over_limit": over, "total_s": round(total, 1)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        print(markdown(report))

    failures = []
    if single is not None and (single["failed"] or not single["server_alive"]):
        failures.append(f"{single['failed']} requests failed with one client")
    if under["failed"]:
        failures.append(f"{under['failed']} requests failed under the queue limit")
    if not under["requests"]:
        failures.append("no request completed under the queue limit")
    if not over["rejected_429"]:
        failures.append("no 429 above the queue limit")
    if over["other"]:
        failures.append(f"unexpected outcomes above the limit: {over['other']}")
    if not (under["server_alive"] and over["server_alive"] and over["served_after"]):
        failures.append("a server died or stopped answering")
    for f in failures:
        print(f"FAIL {f}")
    sys.exit(1 if failures else 0)


def markdown(r):
    u, o, one = r["under_limit"], r["over_limit"], r["single_client"]
    rows = [one, u] if one else [u]
    lines = [
        f"Machine: {r['cpu']}, {r['cores']} cores (load average {r['load_average_before']:.2f} before the run; "
        f"the last column is the CPU that processes other than the server and the clients took meanwhile); "
        f"demo model; `{os.path.relpath(r['moe'], harness.REPO)}`; streamed chat requests "
        f"(a different short question each time, `temperature` 0, `max_tokens` {u['max_tokens']}).",
        f"Command: `{r['command']}`",
        "",
        "| clients | `--max-queue` | seconds | requests | failed | latency p50 / p99 | first token p50 / p99 "
        "| tokens/s (all clients) | decode tokens/s per request (median) | other processes' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['clients']} | {x['max_queue']} | {x['duration_s']} | {x['requests']} | {x['failed']} "
            f"| {fmt(x['latency_p50_s'], ' s')} / {fmt(x['latency_p99_s'], ' s')} "
            f"| {fmt(x['ttft_p50_s'], ' s')} / {fmt(x['ttft_p99_s'], ' s')} "
            f"| {fmt(x['tokens_per_s'], '', 1)} | {fmt(x['decode_tokens_per_s_per_request_median'], '', 1)} "
            f"| {fmt(x['other_processes_cores'], ' cores', 2)} |")
    lines += [
        "",
        f"Above the limit: {o['burst']} requests at once against `--max-queue {o['max_queue']}`: "
        f"{o['answered']} answered, {o['rejected_429']} refused with 429, {len(o['other'])} other errors; "
        f"the server {'answered the next request' if o['served_after'] else 'did NOT answer afterwards'} "
        f"and {'was still running' if o['server_alive'] else 'had EXITED'}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
