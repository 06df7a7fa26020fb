#!/usr/bin/env python3
"""End-to-end prefill and decode tokens/s of SwiftMoE next to llama.cpp, in one run.

Usage:
    python Benchmarks/compare.py MODEL.gguf [MODEL.gguf ...]
        [--threads 1,2] [--prompt-tokens 128] [--gen-tokens 64] [--repetitions 5]
        [--moe .build/release/moe] [--llama-only] [--json results.json] [--seed 1234]

For every model and thread count it measures, one after the other (never concurrently):

  llama.cpp  through llama-cpp-python, in a child process (so its peak RSS is its own):
             Llama(model, n_threads=N, n_threads_batch=N, n_ctx) with default loading;
             one untimed warm-up pass, then R repetitions of: clear the KV cache, prefill
             P fixed token ids in one eval, decode G tokens greedily (argmax) one eval each.
             Tokens/s come from llama.cpp's own timers (llama_perf_context: t_p_eval, t_eval);
             wall-clock figures around eval are recorded in the JSON too.
  SwiftMoE   `moe bench MODEL --threads N --prompt-tokens P --gen-tokens G --repetitions R --json`
             (its own warm-up and timing; schema below). If the binary is missing or fails,
             that is reported and llama.cpp's numbers are still printed.

It prints a table of median tokens/s with the ratio SwiftMoE / llama.cpp, and with --json
writes every figure (median, min, max, wall clock, peak RSS, machine, settings) to that file.
Exit status: 0 when llama.cpp measured every case (a failing `moe` is reported, not fatal).

Prompt ids: P ids drawn from a seeded RNG over the model's normal tokens (BOS first); the same
ids every run. `moe bench` picks its own ids; with a fixed token count the work per token does
not depend on which ids they are, except through routing.

`moe bench --json` schema:
    {"model": str, "threads": int, "prompt_tokens": int, "gen_tokens": int, "repetitions": int,
     "prefill": {"tokens_per_second": {"median": float, "min": float, "max": float}},
     "decode": {"tokens_per_second": {"median": float, "min": float, "max": float}},
     "peak_rss_bytes": int}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- llama.cpp side


def prompt_ids(n_vocab: int, count: int, bos: int | None, seed: int) -> list[int]:
    """Deterministic prompt: BOS (if any) then ids from the upper part of the vocabulary."""
    rng = random.Random(seed)
    low = min(259, n_vocab // 2)  # past <unk>/<s>/</s> and SentencePiece byte tokens
    ids = [rng.randrange(low, n_vocab) for _ in range(count)]
    if bos is not None and bos >= 0 and count > 0:
        ids[0] = bos
    return ids


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def llama_worker(spec: dict) -> dict:
    """Runs in a child process: loads the model and measures. Returns the result dict."""
    import resource

    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    threads, p, g, reps = spec["threads"], spec["prompt_tokens"], spec["gen_tokens"], spec["repetitions"]
    n_ctx = ((p + g + 8 + 255) // 256) * 256
    t0 = time.perf_counter()
    llm = Llama(
        model_path=spec["model"], n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
        seed=spec["seed"], no_perf=False, verbose=False,
    )
    load_s = time.perf_counter() - t0
    ctx = llm.ctx
    n_vocab = llm.n_vocab()
    ids = prompt_ids(n_vocab, p, llm.token_bos(), spec["seed"])

    def argmax_last() -> int:
        # eval() keeps no logits unless logits_all; reading them also synchronizes the context.
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))))

    def one_pass() -> dict:
        llm.reset()  # n_tokens = 0; the next eval drops the KV cache from position 0
        llama_cpp.llama_perf_context_reset(ctx)
        t_start = time.perf_counter()
        llm.eval(ids)
        tok = argmax_last()
        t_prefill = time.perf_counter()
        generated = [tok]
        for _ in range(g):
            llm.eval([tok])
            tok = argmax_last()
            generated.append(tok)
        t_end = time.perf_counter()
        perf = llama_cpp.llama_perf_context(ctx)
        return {
            "prefill_tps": perf.n_p_eval / (perf.t_p_eval_ms / 1e3) if perf.t_p_eval_ms > 0 else float("nan"),
            "decode_tps": perf.n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms > 0 else float("nan"),
            "prefill_wall_tps": p / (t_prefill - t_start),
            "decode_wall_tps": g / (t_end - t_prefill) if g else float("nan"),
            "n_p_eval": perf.n_p_eval,
            "n_eval": perf.n_eval,
            "generated": generated,
        }

    for _ in range(spec["warmup"]):
        one_pass()
    runs = [one_pass() for _ in range(reps)]
    # Greedy decode from the same prompt must be reproducible: a cheap sanity check.
    deterministic = all(r["generated"] == runs[0]["generated"] for r in runs)
    del llm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "model": spec["model"],
        "threads": threads,
        "prompt_tokens": p,
        "gen_tokens": g,
        "repetitions": reps,
        "n_ctx": n_ctx,
        "load_seconds": load_s,
        "prefill": {"tokens_per_second": summary([r["prefill_tps"] for r in runs]),
                    "wall_tokens_per_second": summary([r["prefill_wall_tps"] for r in runs])},
        "decode": {"tokens_per_second": summary([r["decode_tps"] for r in runs]),
                   "wall_tokens_per_second": summary([r["decode_wall_tps"] for r in runs])},
        "peak_rss_bytes": rss,
        "greedy_deterministic": deterministic,
        "generated_head": runs[0]["generated"][:8],
        "perf_counts": {"n_p_eval": runs[0]["n_p_eval"], "n_eval": runs[0]["n_eval"]},
    }


def run_llama(spec: dict, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--llama-worker", json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        return {"engine": "llama.cpp", "error": f"exit {proc.returncode}: {tail(proc.stderr)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- SwiftMoE side


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def parse_moe_json(stdout: str) -> dict:
    """The JSON object `moe bench --json` printed (the whole output, or its last {...} line)."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        for line in reversed(stdout.strip().splitlines()):
            if line.lstrip().startswith("{"):
                return json.loads(line)
        raise


def check_moe_schema(doc: dict) -> None:
    for key, kind in [("model", str), ("threads", int), ("prompt_tokens", int), ("gen_tokens", int),
                      ("repetitions", int), ("peak_rss_bytes", int)]:
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"`{key}` missing or not {kind.__name__}")
    for phase in ("prefill", "decode"):
        tps = doc.get(phase, {}).get("tokens_per_second", {})
        for stat in ("median", "min", "max"):
            if not isinstance(tps.get(stat), (int, float)):
                raise ValueError(f"`{phase}.tokens_per_second.{stat}` missing or not a number")


def run_moe(binary: str, spec: dict, timeout: float) -> dict:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return {"engine": "SwiftMoE", "error": f"binary not found at {binary} (build it: swift build -c release)"}
    cmd = [binary, "bench", spec["model"], "--threads", str(spec["threads"]),
           "--prompt-tokens", str(spec["prompt_tokens"]), "--gen-tokens", str(spec["gen_tokens"]),
           "--repetitions", str(spec["repetitions"]), "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"engine": "SwiftMoE", "command": cmd, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        message = f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}"
        if "Unexpected argument 'bench'" in message or "Unknown option" in message:
            message += "\n(this moe build has no `moe bench` with these options yet)"
        return {"engine": "SwiftMoE", "command": cmd, "error": message}
    try:
        doc = parse_moe_json(proc.stdout)
        check_moe_schema(doc)
    except (ValueError, json.JSONDecodeError) as e:
        return {"engine": "SwiftMoE", "command": cmd, "error": f"unreadable --json output: {e}: {tail(proc.stdout)}"}
    doc["engine"] = "SwiftMoE"
    doc["command"] = cmd
    return doc


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    info = {"platform": platform.platform(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                info["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
                break
    except OSError:
        pass
    return info


def median_of(result: dict, phase: str) -> float | None:
    if "error" in result:
        return None
    return result[phase]["tokens_per_second"]["median"]


def print_table(rows: list[dict]) -> None:
    header = f"{'model':<28} {'thr':>3} {'phase':<8} {'llama.cpp t/s':>14} {'SwiftMoE t/s':>13} {'ratio':>7}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        name = os.path.basename(row["model"])[:28]
        for phase in ("prefill", "decode"):
            lc, sm = median_of(row["llama_cpp"], phase), None
            if row.get("swiftmoe") is not None:
                sm = median_of(row["swiftmoe"], phase)
            ratio = f"{sm / lc:7.2f}" if (lc and sm) else f"{'-':>7}"
            lcs = f"{lc:14.2f}" if lc is not None else f"{'error':>14}"
            sms = f"{sm:13.2f}" if sm is not None else f"{'-' if row.get('swiftmoe') is None else 'error':>13}"
            print(f"{name:<28} {row['threads']:>3} {phase:<8} {lcs} {sms} {ratio}")
    print()
    for row in rows:
        for key in ("llama_cpp", "swiftmoe"):
            res = row.get(key)
            if res and "error" in res:
                print(f"{res['engine']} on {os.path.basename(row['model'])}, {row['threads']} thread(s): {res['error']}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--llama-worker":
        print(json.dumps(llama_worker(json.loads(sys.argv[2]))))
        return 0

    ap = argparse.ArgumentParser(description="SwiftMoE vs llama.cpp prefill/decode tokens/s, same run.")
    ap.add_argument("models", nargs="+", help="GGUF model files")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed llama.cpp passes before measuring")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--moe", default=os.path.join(ROOT, ".build", "release", "moe"), help="path of the moe binary")
    ap.add_argument("--llama-only", action="store_true", help="measure llama.cpp only")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    args = ap.parse_args()

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    for m in args.models:
        if not os.path.isfile(m):
            ap.error(f"no such model file: {m}")
    if args.prompt_tokens < 2 or args.gen_tokens < 1 or args.repetitions < 1 or min(threads) < 1:
        ap.error("need --prompt-tokens >= 2, --gen-tokens >= 1, --repetitions >= 1, threads >= 1")

    rows = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load = os.getloadavg()[0]
    if load > 0.5:
        # Other work on the machine skews both engines: say so, the numbers are then rough.
        print(f"warning: 1-minute load average is {load:.2f} before starting; results may be noisy",
              file=sys.stderr, flush=True)
    for model in args.models:
        for n in threads:
            spec = {"model": os.path.abspath(model), "threads": n, "prompt_tokens": args.prompt_tokens,
                    "gen_tokens": args.gen_tokens, "repetitions": args.repetitions, "warmup": args.warmup,
                    "seed": args.seed}
            print(f"llama.cpp: {os.path.basename(model)}, {n} thread(s) ...", file=sys.stderr, flush=True)
            row = {"model": spec["model"], "threads": n, "llama_cpp": run_llama(spec, args.timeout), "swiftmoe": None}
            row["load_average_after_llama_cpp"] = os.getloadavg()[0]
            if not args.llama_only:
                print(f"SwiftMoE:  {os.path.basename(model)}, {n} thread(s) ...", file=sys.stderr, flush=True)
                row["swiftmoe"] = run_moe(args.moe, spec, args.timeout)
                row["load_average_after_swiftmoe"] = os.getloadavg()[0]
            for phase in ("prefill", "decode"):
                lc = median_of(row["llama_cpp"], phase)
                sm = median_of(row["swiftmoe"], phase) if row["swiftmoe"] else None
                row.setdefault("ratio_swiftmoe_over_llama_cpp", {})[phase] = (sm / lc) if (lc and sm) else None
            rows.append(row)

    print_table(rows)
    doc = {"started": started, "machine": machine(), "load_average_at_start": load,
           "config": {"threads": threads, "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
                      "repetitions": args.repetitions, "warmup": args.warmup, "seed": args.seed,
                      "moe": None if args.llama_only else args.moe},
           "results": rows}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    failed = any("error" in r["llama_cpp"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
