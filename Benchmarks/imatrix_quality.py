#!/usr/bin/env python3
"""Activation-aware quantization and proxy sensitivities on a model (issue #21's figures).

For MODEL (a GGUF file or HF directory) and a calibration TEXT, this

  1. runs ``moe calibrate MODEL --text TEXT`` (proxy sensitivities, the default) and, with
     --measured, ``moe calibrate --sensitivity measured`` too, timing both;
  2. writes uniform stores at each of --types three ways: plain (``--no-imatrix``: llama.cpp's
     reference encoding), activation-aware (``--imatrix`` the calibration), and llama.cpp's own
     imatrix files (``llama-imatrix`` on the same text, then ``llama-quantize --imatrix`` with
     every expert tensor at the type and everything else as in MODEL, converted with
     ``moe convert --bits keep``);
  3. plans stores with ``moe convert --target-size`` between neighbouring plain uniform stores
     (--fractions), from the proxy calibration and, with --measured, from the measured one (both
     quantized activation-aware);
  4. scores every store with ``moe kld STORE --base MODEL`` on --eval-text (first --chunks chunks);
  5. with --measured, compares proxy and measured sensitivities (Spearman rank correlation).

Writes OUT/imatrix.json (everything), OUT/imatrix.csv (one row per store) and OUT/imatrix-kld.svg
(KL divergence against store size, one line per kind), and prints the Markdown table of
docs/quality.md. Each store's row has its size, mean KL divergence from MODEL with its standard
error, the perplexity ratio exp(mean ΔNLL) with its paired standard error, top-1 agreement, and
every comparison curve interpolated at its size. Scores are cached in WORK/scores.json by store
path, size and modification time, so a rerun with --reuse only scores what changed. The demo's
numbers:

    python3 tools/store_to_gguf.py Models/demo/demo.moe .build-demo/demo-q8_0.gguf
    swift build -c release --product moe
    python3 Benchmarks/imatrix_quality.py --model .build-demo/demo-q8_0.gguf --work .build-demo/imatrix \
        --text Models/demo/calibration.txt --eval-text Models/demo/validation.txt --measured --out docs/figures
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import first_json, svg  # noqa: E402  (the same JSON scraping and plot as Benchmarks/quality.py)
LLAMA = Path(os.environ.get("LLAMA_CPP_BIN", "/opt/moe-cache/llama.cpp-build/bin"))


def run(cmd: list[str]) -> tuple[str, float]:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.time()
    env = dict(os.environ, LD_LIBRARY_PATH=str(LLAMA))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr, time.time() - start


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")


def interpolate(curve: list[tuple[int, float]], size: int) -> float | None:
    curve = sorted(curve)
    for (s0, v0), (s1, v1) in zip(curve, curve[1:]):
        if s0 <= size <= s1:
            return v0 + (v1 - v0) * (size - s0) / (s1 - s0)
    return None


KINDS = [("uniform", "#444", "uniform, plain (--no-imatrix)"), ("uniform-imatrix", "#2ca02c", "uniform, activation-aware"),
         ("llama-imatrix", "#9467bd", "llama.cpp imatrix uniform"), ("planned-proxy", "#d62728", "planned (proxy) + act.-aware"),
         ("planned-proxy-plain", "#ff7f0e", "planned (proxy), plain"), ("planned-measured", "#1f77b4", "planned (measured) + act.-aware")]
CURVES = ("uniform", "uniform-imatrix", "llama-imatrix")
# Every store raw: --compression auto measures the disk and may LZ4 some records, which would make
# "equal size" depend on the machine; the planner's sizes are raw record bytes too.
RAW = ["--compression", "none"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for stores (outside git)")
    ap.add_argument("--text", default=str(ROOT / "Models/demo/calibration.txt"))
    ap.add_argument("--eval-text", default=str(ROOT / "Models/demo/validation.txt"))
    ap.add_argument("--types", default="q2_K,q3_K,q4_K,q5_K,q6_K")
    ap.add_argument("--fractions", default="0.25,0.5,0.75")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=120, help="kld chunks of --ctx tokens (-1: the whole text)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--measured", action="store_true", help="also calibrate with measured sensitivities and compare")
    ap.add_argument("--plain-plans", action="store_true",
                    help="also plan from the proxy without activation-aware quantization (--no-imatrix): what each half gives")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp's imatrix stores")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the calibration and the stores already in --work (scores are cached either way)")
    ap.add_argument("--moe", default=str(ROOT / ".build/release/moe"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures")
    args = ap.parse_args()
    moe, work, types = args.moe, args.work, args.types.split(",")
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"model": args.model, "text": args.text, "eval_text": args.eval_text, "ctx": args.ctx, "chunks": args.chunks,
                    "cpu": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip(),
                    "load_average_start": os.getloadavg()[0], "stores": []}
    cache_path = work / "scores.json"
    cache: dict = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cal = work / "proxy.calibration.json"
    if not (args.reuse and cal.exists()):
        out, secs = run([moe, "calibrate", args.model, "--text", args.text, "-o", str(cal), "--restart", "--threads", str(args.threads)])
        result["calibrate_proxy_seconds"] = secs
        result["calibrate_proxy_log"] = [l for l in out.splitlines() if "routing pass" in l]
    measured = work / "measured.calibration.json"
    if args.measured and not measured.exists():
        _, secs = run([moe, "calibrate", args.model, "--text", args.text, "-o", str(measured), "--sensitivity", "measured",
                       "--threads", str(args.threads)])
        result["calibrate_measured_seconds"] = secs

    def build(path: Path, cmd: list[str]) -> None:
        if not (args.reuse and path.exists()):
            run(cmd)

    def score(kind: str, label: str, path: Path, extra: dict | None = None) -> None:
        st = path.stat()
        key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{args.model}|{args.eval_text}|{args.ctx}|{args.chunks}"
        if key not in cache:
            limit = ["--chunks", str(args.chunks)] if args.chunks > 0 else []
            cache[key] = first_json(run([moe, "kld", str(path), "--base", args.model, "--text", args.eval_text, "--ctx-size", str(args.ctx),
                                         "--threads", str(args.threads), "--json"] + limit)[0])
            cache_path.write_text(json.dumps(cache, indent=1) + "\n")
        k = cache[key]
        ratio = math.exp(k["meanDeltaNLL"])
        row = {"kind": kind, "series": kind, "label": label, "bytes": st.st_size, "kld": k["meanKLD"], "kld_se": k["standardError"],
               "top1": k["top1Agreement"], "perplexity": k["perplexity"], "base_perplexity": k["basePerplexity"],
               "ppl_ratio": ratio, "ppl_ratio_se": ratio * k["deltaNLLStandardError"], "increase_pct": 100 * (ratio - 1),
               "scored_tokens": k["scoredTokens"], **(extra or {})}
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["stores"].append(row)

    for t in types:
        p = work / f"plain-{t}.moe"
        build(p, [moe, "convert", args.model, "-o", str(p), "--bits", t, "--no-imatrix"] + RAW)
        score("uniform", t, p)
        p = work / f"imatrix-{t}.moe"
        build(p, [moe, "convert", args.model, "-o", str(p), "--bits", t, "--imatrix", str(cal)] + RAW)
        score("uniform-imatrix", t, p)
    if not args.no_llama:
        imatrix = work / "llama.imatrix.gguf"
        if not (args.reuse and imatrix.exists()):
            _, secs = run([str(LLAMA / "llama-imatrix"), "-m", args.model, "-f", args.text, "-o", str(imatrix), "-c", "512",
                           "-t", str(args.threads)])
            result["llama_imatrix_seconds"] = secs
        for t in types:
            g = work / f"llama-{t}.gguf"
            overrides = sum((["--tensor-type", f"ffn_{m}_exps={t}"] for m in ("gate", "up", "down")), [])
            build(g, [str(LLAMA / "llama-quantize"), "--allow-requantize", "--imatrix", str(imatrix)] + overrides +
                  [args.model, str(g), "Q8_0", str(args.threads)])
            p = work / f"llama-{t}.moe"
            build(p, [moe, "convert", str(g), "-o", str(p), "--bits", "keep", "--no-imatrix"] + RAW)
            score("llama-imatrix", t, p)
    plain = sorted((r["bytes"], r["kld"]) for r in result["stores"] if r["kind"] == "uniform")
    fractions = [float(f) for f in args.fractions.split(",")]
    targets = [int(s0 + f * (s1 - s0)) for (s0, _), (s1, _) in zip(plain, plain[1:]) for f in fractions]
    sources = [("planned-proxy", cal, ["--imatrix", str(cal)])]
    if args.plain_plans:
        sources.append(("planned-proxy-plain", cal, ["--no-imatrix"]))
    if args.measured:
        sources.append(("planned-measured", measured, ["--imatrix", str(cal)]))
    routing = json.loads(cal.read_text())
    expert_total = len(routing["layers"]) * routing["expertCount"]  # MoE layers (their indices) x experts
    for kind, c, quantization in sources:
        for target in targets:
            p = work / f"{kind}-{target}.moe"
            build(p, [moe, "convert", args.model, "-o", str(p), "--target-size", str(target), "--calibration", str(c),
                      "--plan-out", str(p.with_suffix(".plan.json"))] + quantization + RAW)
            plan = json.loads(p.with_suffix(".plan.json").read_text())
            counts: dict[str, int] = {}
            for e in plan.get("experts", []):
                counts[e.get("type", "?")] = counts.get(e.get("type", "?"), 0) + 1
            # The plan lists only the experts that differ from its "default" type; the rest are that type.
            rest = expert_total - sum(counts.values())
            if rest > 0:
                counts[plan.get("default", "?")] = counts.get(plan.get("default", "?"), 0) + rest
            score(kind, f"{target / 1e6:.2f}MB", p, {"target": target, "types": ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))})
    curves = {k: sorted((r["bytes"], r["kld"]) for r in result["stores"] if r["kind"] == k) for k in CURVES}
    for r in result["stores"]:
        for k, curve in curves.items():
            r[f"{k}_at_size"] = interpolate(curve, r["bytes"])
        if r.get("uniform_at_size"):
            r["ratio_to_plain"] = r["kld"] / r["uniform_at_size"]
        if r.get("llama-imatrix_at_size"):
            r["ratio_to_llama"] = r["kld"] / r["llama-imatrix_at_size"]
    if args.measured:
        p = json.loads(cal.read_text())["sensitivity"]["measurements"]
        m = json.loads(measured.read_text())["sensitivity"]["measurements"]
        key = lambda x: (x["layer"], x["expert"], x["type"])
        pm, mm = {key(x): x["kld"] for x in p}, {key(x): x["kld"] for x in m}
        common = sorted(set(pm) & set(mm))
        result["spearman_all"] = spearman([pm[k] for k in common], [mm[k] for k in common])
        result["spearman_by_type"] = {t: spearman([pm[k] for k in common if k[2] == t], [mm[k] for k in common if k[2] == t])
                                      for t in sorted({k[2] for k in common})}
    result["load_average_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "imatrix.json").write_text(json.dumps(result, indent=1) + "\n")
    cols = ["kind", "label", "target", "bytes", "kld", "kld_se", "ppl_ratio", "ppl_ratio_se", "top1", "perplexity", "base_perplexity",
            "uniform_at_size", "ratio_to_plain", "uniform-imatrix_at_size", "llama-imatrix_at_size", "ratio_to_llama", "types"]
    with open(args.out / "imatrix.csv", "w") as f:
        f.write(",".join(cols) + "\n")
        for r in result["stores"]:
            f.write(",".join("" if r.get(c) is None else f'"{r[c]}"' if isinstance(r[c], str) else str(r[c]) for c in cols) + "\n")
    present = [k for k in KINDS if any(r["kind"] == k[0] for r in result["stores"])]
    svg(result["stores"], args.out / "imatrix-kld.svg", "KL divergence from the model as given vs store size", key="kld",
        ylabel="mean KL divergence, nats/token (log)", unit="", floor=1e-7, series=present)
    print("| store | kind | size (bytes) | KLD | ± | PPL ratio | ± | plain uniform KLD at size | ratio | llama.cpp imatrix KLD at size | ratio | types |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda v, fmt=".6f": "" if v is None else format(v, fmt)
    for r in sorted(result["stores"], key=lambda r: ([k for k, _, _ in KINDS].index(r["kind"]), r["bytes"])):
        print(f"| {r['label']} | {r['kind']} | {r['bytes']} | {r['kld']:.6f} | {r['kld_se']:.6f} | {r['ppl_ratio']:.5f} | {r['ppl_ratio_se']:.5f} | "
              f"{f(r.get('uniform_at_size'))} | {f(r.get('ratio_to_plain'), '.2f')} | {f(r.get('llama-imatrix_at_size'))} | "
              f"{f(r.get('ratio_to_llama'), '.2f')} | {r.get('types', '')} |")
    if args.measured:
        print(f"\nSpearman proxy vs measured: all {result['spearman_all']:.3f}; " +
              ", ".join(f"{t} {v:.3f}" for t, v in result["spearman_by_type"].items()))


if __name__ == "__main__":
    main()
