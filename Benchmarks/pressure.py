#!/usr/bin/env python3
"""Memory-pressure benchmark: llama.cpp as users run it against SwiftMoE `--memory`, on one GGUF,
with the RAM left to each run limited to a share of the file's size.

For each level of RAM left (all = no limit, then 100, 75, 50 and 25% of the file by default),
each configuration runs in its own process under the same limit:

  llama-default   llama-cpp-python's defaults: mmap + weight repacking (use_extra_bufts)
  llama-mmap      mmap without repacking (use_extra_bufts = false): pages come and go with the page cache
  llama-direct    load_mode DIRECT_IO: the whole model read into RAM with O_DIRECT; run only where
                  the file fits in the RAM left (it cannot page)
  moe             `moe bench MODEL --memory (RAM left × 0.95)` (experts paged from the GGUF;
                  5% left for the binary's own pages and the kernel)

Each run: one warm-up prefill + decode, then one measured prefill of --prompt-tokens and decode of
--gen-tokens (fixed pseudo-random token ids). Reported per run: prefill and decode t/s, peak RSS
(ru_maxrss), bytes read from disk (/proc/PID/io read_bytes) and major faults over the whole
process (load, warm-up and measurement), and what could not run (killed: out of memory, or timed
out). Ratios: SwiftMoE over the best llama.cpp configuration that ran at that level.

How RAM is limited (--limit auto): a memory cgroup of the measured process's own — cgroup v2
`memory.max` when the machine's cgroup v2 has the memory controller, else (as root) cgroup v1
`memory.limit_in_bytes` in a new group at the v1 memory root, removed after the run. Its RSS
and the page cache it fills (llama.cpp's mmap) are charged there, so the limit is exact and the
rest of the machine keeps its memory. Without either (or with --limit lock), a locker process
mmaps and mlocks anonymous memory until MemAvailable is the RAM left (as root; released when a
level ends, when this script exits, and — PR_SET_PDEATHSIG and its stdin pipe — when it dies);
on a machine shared with other jobs this is approximate (their growth comes out of the RAM
left) and it starves them, so prefer a cgroup. The measured process gets oom_score_adj 1000, so
the OOM killer takes it, not the locker or anything else. The page cache is dropped before each
run (posix_fadvise of the model file, and /proc/sys/vm/drop_caches as root).

Usage (as root, llama-cpp-python importable; LLAMA_CPP_LIB_PATH if it was built separately):
  python3 Benchmarks/pressure.py MODEL.gguf [--moe .build/release/moe] [--levels all,100,75,50,25]
      [--configs llama-default,llama-mmap,llama-direct,moe] [--prompt-tokens 64] [--gen-tokens 16]
      [--threads 2] [--timeout 300] [--json out.json] [--markdown out.md]
  python3 Benchmarks/pressure.py --test-locker 512MB     # lock and release a little, to check the locker
  python3 Benchmarks/pressure.py --combine a.json b.json [--json all.json] [--markdown t.md]
                                                          # one table from runs of different --configs

The model used in docs/performance.md: tools/make_bench_model.py --layers 10 --experts 16
--types q4_k_m --name bench-moe-e16 (Mixtral layout, 5.8 B parameters, 3.5 GB).
"""
import argparse
import ctypes
import json
import mmap
import os
import random
import signal
import subprocess
import sys
import threading
import time

CONFIGS = ["llama-default", "llama-mmap", "llama-direct", "moe"]
MiB = 1 << 20


# ---------------------------------------------------------------- machine

def meminfo(key="MemAvailable"):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/meminfo")


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def parse_size(text):
    text = text.strip().upper()
    for suffix, scale in (("GIB", 1 << 30), ("MIB", 1 << 20), ("GB", 10**9), ("MB", 10**6), ("G", 1 << 30), ("M", 1 << 20)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(text)


def drop_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        try:
            subprocess.run(["sync"], check=False)
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1\n")
        except OSError:
            pass


def cgroup2_memory_dir():
    """Our own cgroup v2 directory if its memory controller can be used, else None."""
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                if "memory" not in f.read().split():
                    continue
        except OSError:
            continue
        with open("/proc/self/cgroup") as f:
            own = next((l.split(":", 2)[2].strip() for l in f if l.startswith("0::")), None)
        if own is None:
            continue
        parent = os.path.join(root, own.lstrip("/"))
        try:
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                if "memory" in f.read().split():
                    return parent
        except OSError:
            pass
    return None


# ---------------------------------------------------------------- limits

class Locker:
    """Locks anonymous memory in a child process until MemAvailable is `target` bytes."""

    def __init__(self, target):
        self.target = target
        self.proc = None
        self.locked = 0

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--locker", str(self.target)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "LOCKED":
            self.release()
            raise RuntimeError(f"the locker did not start: {line}")
        self.locked = int(line[1])
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def release(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __exit__(self, *exc):
        self.release()


def locker_main(target):
    """The locker process: lock 64 MiB chunks while MemAvailable stays above `target`, then wait for stdin to close."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the benchmark
    if os.getppid() == 1:
        return
    chunks = []
    while True:
        room = meminfo() - target
        chunk = 256 * MiB if room > 1024 * MiB else 64 * MiB
        if room < chunk:
            break
        m = mmap.mmap(-1, chunk, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        address = ctypes.addressof(ctypes.c_char.from_buffer(m))
        if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(chunk)) != 0:
            break  # not root, or RLIMIT_MEMLOCK: stop here (the benchmark reports what was reached)
        chunks.append(m)
    print("LOCKED", sum(len(m) for m in chunks), flush=True)
    sys.stdin.read()  # returns when the benchmark closes the pipe or dies


CGROUP1_MEMORY = "/sys/fs/cgroup/memory"


def cgroup1_memory_root():
    """The cgroup v1 memory hierarchy's root if we may create a group in it (root only)."""
    if os.geteuid() != 0 or not os.path.exists(os.path.join(CGROUP1_MEMORY, "memory.limit_in_bytes")):
        return None
    return CGROUP1_MEMORY


class CgroupLimit:
    """A memory cgroup of its own for the measured process: v2 `memory.max`, or v1
    `memory.limit_in_bytes`. Its RSS and the page cache it fills are charged there, so the
    limit holds exactly and nothing else on the machine loses memory."""

    def __init__(self, parent, limit, version=2):
        self.dir = os.path.join(parent, f"swiftmoe-pressure-{os.getpid()}")
        self.limit = limit
        self.version = version

    def __enter__(self):
        os.makedirs(self.dir, exist_ok=True)
        files = (("memory.max", str(self.limit)), ("memory.swap.max", "0")) if self.version == 2 else \
            (("memory.limit_in_bytes", str(self.limit)), ("memory.swappiness", "0"))
        for i, (name, value) in enumerate(files):
            try:
                with open(os.path.join(self.dir, name), "w") as f:
                    f.write(value)
            except OSError:
                if i == 0:
                    self.__exit__()
                    raise
        return self

    def enter_child(self):
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write("0")

    def peak(self):
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            with open(os.path.join(self.dir, name)) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def reset_peak(self):
        if self.version == 1:
            try:
                with open(os.path.join(self.dir, "memory.max_usage_in_bytes"), "w") as f:
                    f.write("0")
            except OSError:
                pass

    def __exit__(self, *exc):
        for _ in range(20):
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.2)


# ---------------------------------------------------------------- one measured process

def measure(argv, timeout, cgroup=None, env=None):
    """Runs argv with oom_score_adj 1000 (and in `cgroup`); returns (status, stdout, stats)."""
    def prepare():
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        if cgroup is not None:
            cgroup.enter_child()

    out = open(f"/tmp/pressure-{os.getpid()}.out", "w+")
    err = open(f"/tmp/pressure-{os.getpid()}.err", "w+")
    start = time.time()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, preexec_fn=prepare, env=env)
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        os.kill(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    stats = {}
    try:
        # Wait without reaping, so /proc/PID still describes the finished process.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        try:
            with open(f"/proc/{proc.pid}/io") as f:
                io = dict(line.split(": ") for line in f.read().splitlines())
            stats["read_bytes"] = int(io["read_bytes"])
        except (OSError, KeyError, ValueError):
            pass
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    stats["peak_rss_bytes"] = usage.ru_maxrss * 1024
    stats["major_faults"] = usage.ru_majflt
    stats["wall_seconds"] = round(time.time() - start, 2)
    out.seek(0)
    err.seek(0)
    text, errors = out.read(), err.read()
    out.close()
    err.close()
    os.unlink(out.name)
    os.unlink(err.name)
    if timed_out.is_set():
        return "timed out", text, stats
    if proc.returncode == -signal.SIGKILL:
        return "killed: out of memory", text, stats
    if proc.returncode != 0:
        return f"failed (exit {proc.returncode}): {errors.strip().splitlines()[-1:] if errors.strip() else ''}", text, stats
    return "ok", text, stats


# ---------------------------------------------------------------- llama.cpp child

def llama_child(config, model, prompt, gen, threads):
    """Runs in the measured process: loads `model` with llama.cpp as `config` and prints timings as JSON."""
    import llama_cpp as L

    L.llama_backend_init()
    params = L.llama_model_default_params()
    if config == "llama-mmap":
        params.load_mode = 1  # LLAMA_LOAD_MODE_MMAP
        params.use_extra_bufts = False
    elif config == "llama-direct":
        params.load_mode = 4  # LLAMA_LOAD_MODE_DIRECT_IO
    # llama-default: llama_model_default_params() as is (load_mode AUTO = mmap on CPU, repacking on)
    t0 = time.perf_counter()
    m = L.llama_model_load_from_file(model.encode(), params)
    if not m:
        raise SystemExit("llama.cpp could not load the model")
    load = time.perf_counter() - t0
    cparams = L.llama_context_default_params()
    cparams.n_ctx = prompt + gen + 16
    cparams.n_batch = cparams.n_ubatch = max(prompt, 1)
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = L.llama_init_from_model(m, cparams)
    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(m))
    rng = random.Random(1234)
    tokens = [rng.randrange(1, vocab) for _ in range(prompt + gen)]

    def run():
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        arr = (L.llama_token * prompt)(*tokens[:prompt])
        t = time.perf_counter()
        if L.llama_decode(ctx, L.llama_batch_get_one(arr, prompt)) != 0:
            raise SystemExit("llama_decode failed (prefill)")
        L.llama_synchronize(ctx)
        pre = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(gen):
            one = (L.llama_token * 1)(tokens[prompt + i])
            if L.llama_decode(ctx, L.llama_batch_get_one(one, 1)) != 0:
                raise SystemExit("llama_decode failed (decode)")
        L.llama_synchronize(ctx)
        dec = time.perf_counter() - t
        return prompt / pre, gen / dec if gen else 0.0

    run()  # warm-up
    prefill, decode = run()
    print(json.dumps({"prefill_tps": prefill, "decode_tps": decode, "load_seconds": load}))


# ---------------------------------------------------------------- the benchmark

def run_config(config, args, ram_left, cgroup):
    if config == "moe":
        context = str(args.prompt_tokens + args.gen_tokens + 16)
        if os.path.basename(args.moe) == "waves-bench":
            # Benchmarks/WavesBench: the same library calls and JSON report, without the server's packages.
            argv = [args.moe, "bench", args.model, "--prompt", str(args.prompt_tokens), "--gen", str(args.gen_tokens),
                    "--reps", "1", "--threads", str(args.threads), "--context", context]
        else:
            argv = [args.moe, "bench", args.model, "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
                    "--repetitions", "1", "--threads", str(args.threads), "--context", context, "--json"]
        if ram_left is not None:
            argv += ["--memory", str(int(ram_left * 0.95))]
        argv += args.moe_args.split()
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--child-llama", config, args.model,
                str(args.prompt_tokens), str(args.gen_tokens), str(args.threads)]
    drop_page_cache(args.model)
    load_before = os.getloadavg()[0]
    status, text, stats = measure(argv, args.timeout, cgroup=cgroup)
    row = {"config": config, "status": status, **stats, "load_average": [load_before, os.getloadavg()[0]]}
    if status == "ok":
        try:
            out = json.JSONDecoder().raw_decode(text, text.index("{"))[0]
        except ValueError:
            row["status"] = "failed: no JSON output"
            return row
        if config == "moe":
            row["prefill_tps"] = out["prefill"]["tokens_per_second"]["median"]
            row["decode_tps"] = out["decode"]["tokens_per_second"]["median"]
            store = out.get("expert_store") or {}
            for key in ("hits", "misses", "bytesRead", "readSeconds", "readDepth", "diskBytesPerSecond", "poolCapacity"):
                if key in store:
                    row["store_" + key] = store[key]
            if store.get("readSeconds"):
                row["store_read_gbps"] = store["bytesRead"] / store["readSeconds"] / 1e9
        else:
            row.update(out)
    return row


def run_level(level, args, size, cgroup_parent):
    ram_left = None if level == "all" else int(size * int(level) / 100)
    result = {"level": level, "ram_left_bytes": ram_left, "runs": []}
    configs = [c for c in args.configs if not (c == "llama-direct" and ram_left is not None and ram_left < size)]
    skipped = [c for c in args.configs if c not in configs]
    for c in skipped:
        result["runs"].append({"config": c, "status": "not run: direct I/O loads the whole file, which does not fit"})
    if ram_left is None:
        for c in configs:
            result["runs"].append(run_config(c, args, None, None))
            print(json.dumps(result["runs"][-1]), flush=True)
        return result
    if cgroup_parent:
        version = 1 if cgroup_parent == CGROUP1_MEMORY else 2
        result["limit"] = "cgroup v2 memory.max" if version == 2 else "cgroup v1 memory.limit_in_bytes"
        for c in configs:
            with CgroupLimit(cgroup_parent, ram_left, version) as cg:
                row = run_config(c, args, ram_left, cg)
                row["cgroup_peak_bytes"] = cg.peak()
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
        return result
    result["limit"] = "mlocked memory in a locker process"
    drop_page_cache(args.model)
    with Locker(ram_left) as locker:
        result["locked_bytes"] = locker.locked
        for c in configs:
            drop_page_cache(args.model)
            available = meminfo()
            row = run_config(c, args, ram_left, None)
            row["mem_available_at_start"] = available
            if not locker.alive():
                row["status"] += " (the locker was killed: the limit did not hold)"
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
    return result


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def markdown(report):
    lines = [f"Model: `{os.path.basename(report['model'])}` ({report['model_bytes'] / 1e9:.2f} GB); CPU: {report['cpu']}, "
             f"{report['threads']} threads; prompt {report['prompt_tokens']} tokens, {report['gen_tokens']} generated; "
             f"RAM limited by {report['limit']}; {load_line(report)}.", "",
             "| RAM left | " + " | ".join(report["configs"]) + " | SwiftMoE ÷ best llama.cpp (decode, prefill) |",
             "|---|" + "---|" * (len(report["configs"]) + 1)]
    for level in report["levels"]:
        label = "everything" if level["level"] == "all" else f"{level['ram_left_bytes'] / 1e9:.2f} GB ({level['level']}%)"
        cells = []
        for c in report["configs"]:
            r = next((r for r in level["runs"] if r["config"] == c), None)
            if r is None:
                cells.append("")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                cell = f"decode {fmt(r['decode_tps'])}, prefill {fmt(r['prefill_tps'], 1)} t/s; RSS {r['peak_rss_bytes'] / 1e9:.2f} GB, " \
                       f"read {r.get('read_bytes', 0) / 1e9:.2f} GB, {r['major_faults']} major faults"
                if c == "moe" and r.get("store_read_gbps"):
                    cell += f"; misses read at {r['store_read_gbps']:.2f} GB/s"
                    if r.get("store_diskBytesPerSecond"):
                        disk = r["store_diskBytesPerSecond"]
                        cell += f" = {100 * r['store_read_gbps'] * 1e9 / disk:.0f}% of the disk's {disk / 1e9:.2f} GB/s at depth {r.get('store_readDepth')}"
                cells.append(cell)
        ratio = level.get("ratio")
        cells.append("—" if not ratio else f"{fmt(ratio.get('decode'), 1)}× ({ratio.get('decode_vs')}), {fmt(ratio.get('prefill'), 1)}× ({ratio.get('prefill_vs')})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_line(report):
    """The 1-minute load average before and after the runs (other processes competing for the CPU)."""
    loads = [x for level in report["levels"] for r in level["runs"] for x in r.get("load_average", [])]
    return f"load average {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs during the runs" if loads else "load not recorded"


def ratios(level):
    ours = next((r for r in level["runs"] if r["config"] == "moe" and r["status"] == "ok"), None)
    peers = [r for r in level["runs"] if r["config"] != "moe" and r["status"] == "ok"]
    if not ours or not peers:
        return None
    best_dec = max(peers, key=lambda r: r["decode_tps"])
    best_pre = max(peers, key=lambda r: r["prefill_tps"])
    return {"decode": ours["decode_tps"] / best_dec["decode_tps"], "decode_vs": best_dec["config"],
            "prefill": ours["prefill_tps"] / best_pre["prefill_tps"], "prefill_vs": best_pre["config"]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--locker":
        return locker_main(int(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-llama":
        config, model, prompt, gen, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        return llama_child(config, model, prompt, gen, threads)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--moe", default=".build/release/moe", help="the moe binary, or Benchmarks/WavesBench's waves-bench (same report, builds faster)")
    ap.add_argument("--moe-args", default="", help="more flags for moe bench, e.g. \"--cache-policy lfu\"")
    ap.add_argument("--levels", default="all,100,75,50,25")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run before it is killed and reported as timed out")
    ap.add_argument("--limit", choices=["auto", "cgroup2", "lock"], default="auto",
                    help="auto: cgroup v2, else cgroup v1 (root), else the locker; lock: always the locker")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the Markdown table here")
    ap.add_argument("--combine", nargs="+", metavar="JSON", help="merge the runs of earlier --json files (same model) into one table")
    ap.add_argument("--test-locker", metavar="SIZE", help="lock SIZE, check MemAvailable fell by about that much, release, and exit")
    args = ap.parse_args()

    if args.test_locker:
        size = parse_size(args.test_locker)
        before = meminfo()
        with Locker(before - size) as locker:
            during = meminfo()
            print(f"locked {locker.locked / MiB:.0f} MiB; MemAvailable {before / MiB:.0f} → {during / MiB:.0f} MiB")
        time.sleep(0.5)
        print(f"released; MemAvailable {meminfo() / MiB:.0f} MiB")
        return 0
    if args.combine:
        reports = [json.load(open(p)) for p in args.combine]
        report = reports[0]
        for other in reports[1:]:
            report["configs"] += [c for c in other["configs"] if c not in report["configs"]]
            for level in other["levels"]:
                mine = next((l for l in report["levels"] if l["level"] == level["level"]), None)
                if mine is None:
                    report["levels"].append(level)
                else:
                    mine["runs"] += level["runs"]
        report["configs"] = [c for c in CONFIGS if c in report["configs"]]
        for level in report["levels"]:
            level["ratio"] = ratios(level)
        return write_report(report, args)
    if not args.model:
        ap.error("MODEL is required")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if any(c not in CONFIGS for c in args.configs):
        ap.error(f"--configs: choose from {', '.join(CONFIGS)}")
    levels = [l.strip() for l in args.levels.split(",") if l.strip()]
    if any(l != "all" and not l.isdigit() for l in levels):
        ap.error("--levels: 'all' or percentages of the file")
    size = os.path.getsize(args.model)
    cgroup_parent = None if args.limit == "lock" else (cgroup2_memory_dir() or (cgroup1_memory_root() if args.limit != "cgroup2" else None))
    if cgroup_parent is None and os.geteuid() != 0 and levels != ["all"]:
        sys.exit("limiting RAM needs root (mlock) or a cgroup v2 memory controller")
    report = {"model": os.path.abspath(args.model), "model_bytes": size, "cpu": cpu_name(), "threads": args.threads,
              "moe_args": args.moe_args, "load_average": os.getloadavg()[0],
              "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens, "configs": args.configs,
              "limit": "mlocked memory in a locker process" if not cgroup_parent else
              ("cgroup v1 memory.limit_in_bytes" if cgroup_parent == CGROUP1_MEMORY else "cgroup v2 memory.max"),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "levels": []}
    print(f"{report['cpu']}; model {size / 1e9:.2f} GB; limit by {report['limit']}", flush=True)
    for level in levels:
        result = run_level(level, args, size, cgroup_parent)
        result["ratio"] = ratios(result)
        report["levels"].append(result)
        if result["ratio"]:
            r = result["ratio"]
            print(f"level {level}: SwiftMoE decode {r['decode']:.2f}× {r['decode_vs']}, prefill {r['prefill']:.2f}× {r['prefill_vs']}", flush=True)
    return write_report(report, args)


def write_report(report, args):
    table = markdown(report)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
