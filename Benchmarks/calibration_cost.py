#!/usr/bin/env python3
"""What `moe calibrate` costs against one forward pass over the same text (issue #21, item 4).

For MODEL and TEXT, runs --repeats times each, alternating:

  forward    moe perplexity MODEL --text TEXT --ctx-size C           (one forward pass over the text)
  calibrate  moe calibrate MODEL --text TEXT --ctx-size C --restart  (routing pass with activation
             statistics, then proxy sensitivities at every --types)

and reports the median wall time of each, calibrate's own split ("routing pass X s, proxy
sensitivities Y s"), the ratio calibrate / forward (wall time, and CPU time, user + system, which other jobs
pausing or preempting these do not inflate), the peak RSS of every run (GNU time's %M), and the 1-minute load average beside each timing. Extra flags after `--` go to both
commands (e.g. `-- --memory 150MB` to page the model). Writes OUT (JSON) if given.

    python3 Benchmarks/calibration_cost.py --model .build-demo/demo-q8_0.gguf --text Models/demo/calibration.txt
    python3 Benchmarks/calibration_cost.py --model .build-demo/bench-many-experts-f16.gguf \\
        --text Models/demo/calibration.txt -- --memory 150MB
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> dict:
    """Runs cmd; wall seconds, peak RSS (MB) of the child, its output, and the load average at start."""
    load = os.getloadavg()[0]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    out, err = p.stdout, p.stderr
    seconds = time.time() - start
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return {"seconds": seconds, "load": load, "output": out + err}


def rss_of(cmd: list[str]) -> tuple[dict, float, float]:
    """timed() plus the command's peak RSS in MB (GNU time's %M) and its CPU seconds, user + system (%U + %S)."""
    r = timed(["/usr/bin/time", "-f", "MAXRSS_KB %M CPU_S %U %S"] + cmd)
    m = re.findall(r"MAXRSS_KB (\d+) CPU_S ([\d.]+) ([\d.]+)", r["output"])
    if not m:
        return r, float("nan"), float("nan")
    return r, int(m[-1][0]) / 1024, float(m[-1][1]) + float(m[-1][2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", default=str(ROOT / "Models/demo/calibration.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--types", default=None, help="calibrate --types (default: calibrate's own)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--moe", default=str(ROOT / ".build/release/moe"))
    ap.add_argument("--work", type=Path, default=Path("/tmp"), help="where the calibration file goes")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("extra", nargs="*", help="flags for both commands, after --")
    args = ap.parse_args()
    cal = args.work / (Path(args.model).name + ".cost.calibration.json")
    common = ["--text", args.text, "--ctx-size", str(args.ctx)] + args.extra
    forward = [args.moe, "perplexity", args.model] + common
    calibrate = [args.moe, "calibrate", args.model] + common + ["--restart", "-o", str(cal)]
    if args.types:
        calibrate += ["--types", args.types]
    runs: dict[str, list[dict]] = {"forward": [], "calibrate": []}
    for _ in range(args.repeats):
        for name, cmd in (("forward", forward), ("calibrate", calibrate)):
            r, rss, cpu = rss_of(cmd)
            row = {"seconds": round(r["seconds"], 2), "cpu_seconds": round(cpu, 2), "load": r["load"], "peak_rss_mb": round(rss, 1)}
            m = re.search(r"routing pass ([\d.]+) s, (\w+) sensitivities ([\d.]+) s", r["output"])
            if m:
                row.update(routing_seconds=float(m.group(1)), sensitivity=m.group(2), sensitivity_seconds=float(m.group(3)))
            print(json.dumps({name: row}), file=sys.stderr, flush=True)
            runs[name].append(row)
    med = lambda rows, k: statistics.median(r[k] for r in rows if k in r) if any(k in r for r in rows) else None
    summary = {
        "model": args.model, "model_bytes": os.path.getsize(args.model), "text": args.text, "ctx": args.ctx, "extra": args.extra,
        "cpu": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip(),
        "runs": runs,
        "forward_seconds": med(runs["forward"], "seconds"), "calibrate_seconds": med(runs["calibrate"], "seconds"),
        "routing_seconds": med(runs["calibrate"], "routing_seconds"), "sensitivity_seconds": med(runs["calibrate"], "sensitivity_seconds"),
        "forward_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["forward"]),
        "calibrate_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["calibrate"]),
    }
    summary["ratio"] = summary["calibrate_seconds"] / summary["forward_seconds"]
    # CPU time (user + system) is blind to other jobs pausing or preempting these: a second view of the ratio.
    summary["forward_cpu_seconds"] = med(runs["forward"], "cpu_seconds")
    summary["calibrate_cpu_seconds"] = med(runs["calibrate"], "cpu_seconds")
    summary["cpu_ratio"] = summary["calibrate_cpu_seconds"] / summary["forward_cpu_seconds"]
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
