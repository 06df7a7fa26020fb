#!/usr/bin/env python3
"""Proxy sensitivities against measured ones: rank correlation and the stores each plans.

For MODEL (GGUF or HF directory) and a calibration TEXT:

  1. ``moe calibrate --sensitivity proxy`` (one routed pass; losses predicted from the
     activation statistics) and ``moe calibrate --sensitivity measured`` (each expert lowered
     alone to each type, KL divergence on the first --windows windows). The measured run
     reuses the proxy run's routing pass (its file is copied first), so both calibrations hold
     the same activation statistics and ``moe convert`` quantizes identically from either: the
     plans are the only difference.
  2. Spearman rank correlation between the two, per type (over experts) and pooled over every
     (expert, type), on all experts and on those the measured windows routed (the others
     measure exactly 0).
  3. Uniform stores at the lowest and highest candidate type bound a band; at --sizes sizes
     inside it, ``moe convert --target-size`` plans a store from each calibration, and
     ``moe kld`` scores every store against MODEL on VALIDATION. The figure of merit is
     KL(proxy-planned) / KL(measured-planned) at equal size (target ≤ 1.1).

Writes OUT/proxy_validation.json and OUT/proxy_validation.md (a Markdown section for
docs/quality-proxy.md) and prints the Markdown.

    python3 Benchmarks/proxy_validation.py --model .build-demo/demo-q8_0.gguf \\
        --text Models/demo/calibration.txt --validation Models/demo/validation.txt \\
        --out .build-proxy/demo --name demo

Everything is deterministic for a given model, text and settings; the timings are not (say
what else ran on the machine next to them).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import kld as moe_kld, run  # noqa: E402  (Benchmarks/quality.py's helpers)
from imatrix_quality import spearman as rank_correlation  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho with ties (imatrix_quality.py's); None for fewer than 3 points or no spread."""
    rho = rank_correlation(a, b) if len(a) >= 3 else float("nan")
    return None if math.isnan(rho) else rho


def sensitivities(path: Path) -> tuple[dict, dict]:
    s = json.loads(path.read_text())["sensitivity"]
    return {(m["layer"], m["expert"], m["type"]): m["kld"] for m in s["measurements"]}, s


def correlations(proxy: dict, measured: dict, types: list[str], routed: set) -> dict:
    out = {}
    for subset, keep in (("all experts", lambda k: True), ("routed in the measured windows", lambda k: (k[0], k[1]) in routed)):
        rows = {}
        for t in types + ["pooled"]:
            keys = [k for k in measured if (t == "pooled" or k[2] == t) and k in proxy and keep(k)]
            rows[t] = dict(n=len(keys), rho=spearman([proxy[k] for k in keys], [measured[k] for k in keys]))
        # Within-expert order across types is trivially right (more bits, less loss); the
        # planner's real question is the across-expert order at each type, and the ratio of
        # losses between types, whose pooled correlation this also reflects.
        out[subset] = rows
    return out


def store_size(path: Path) -> int:
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file or HF directory (the source stores are converted from)")
    ap.add_argument("--text", required=True, help="calibration text")
    ap.add_argument("--validation", required=True, help="held-out text for moe kld")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default=None, help="model name in the report (default: MODEL's file name)")
    ap.add_argument("--moe", default=str(ROOT / ".build" / "release" / "moe"))
    ap.add_argument("--types", default="q2_K,q3_K,q4_K", help="candidate types (the band is lowest..highest)")
    ap.add_argument("--windows", type=int, default=4, help="--sensitivity-windows of the measured calibration")
    ap.add_argument("--ctx-size", type=int, default=512)
    ap.add_argument("--sizes", type=int, default=4, help="target sizes strictly inside the uniform band")
    ap.add_argument("--kld-chunks", type=int, default=0, help="moe kld --chunks (0: the whole validation text)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--proxy-only", action="store_true", help="reuse OUT/measured.json; rerun only the proxy side")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(args.model).name
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    moe = args.moe
    ctx = ["--ctx-size", str(args.ctx_size)]
    timings = {}

    proxy_cal, measured_cal = out / "proxy.json", out / "measured.json"
    t0 = time.time()
    run([moe, "calibrate", args.model, "--text", args.text, "-o", str(proxy_cal), "--types", args.types, "--restart"] + ctx)
    timings["proxy_calibration_s"] = round(time.time() - t0, 1)
    if not (args.proxy_only and measured_cal.exists()):
        # Same routing pass: start from the proxy file (its activations resume; its proxy
        # sensitivities are another method, so the measured pass starts afresh).
        shutil.copyfile(proxy_cal, measured_cal)
        t0 = time.time()
        run([moe, "calibrate", args.model, "--text", args.text, "-o", str(measured_cal), "--types", args.types,
             "--sensitivity", "measured", "--sensitivity-windows", str(args.windows)] + ctx)
        timings["measured_calibration_s"] = round(time.time() - t0, 1)

    proxy, _ = sensitivities(proxy_cal)
    measured, mtable = sensitivities(measured_cal)
    layers = sorted({k[0] for k in measured})
    routed = {(layers[i], e) for i, row in enumerate(mtable.get("activations") or []) for e, n in enumerate(row) if n > 0}
    corr = correlations(proxy, measured, types, routed)

    def kld(store: Path) -> dict:
        return moe_kld(moe, str(store), args.model, args.validation, args.ctx_size, args.threads, args.kld_chunks)

    stores = []

    def score(kind: str, label: str, store: Path, target: int | None) -> None:
        k = kld(store)
        stores.append(dict(kind=kind, label=label, target=target, bytes=store_size(store), kld=k["meanKLD"],
                           kld_stderr=k["standardError"], top1=k["top1Agreement"]))
        print(f"  {label}: {store_size(store)} bytes, KLD {k['meanKLD']:.6f}", file=sys.stderr, flush=True)
        store.unlink()

    # Uniform stores at the band's ends (activation-aware, as the planned ones).
    uniform = {}
    for t in (types[0], types[-1]):
        p = out / f"uniform-{t}.moe"
        run([moe, "convert", args.model, "-o", str(p), "--bits", t, "--compression", "none", "--imatrix", str(proxy_cal)])
        uniform[t] = store_size(p)
        score("uniform", t, p, None)
    low, high = uniform[types[0]], uniform[types[-1]]
    targets = [int(low + (high - low) * (i + 1) / (args.sizes + 1)) for i in range(args.sizes)]
    for target in targets:
        for kind, cal in (("proxy", proxy_cal), ("measured", measured_cal)):
            p = out / f"{kind}-{target}.moe"
            run([moe, "convert", args.model, "-o", str(p), "--target-size", str(target), "--compression", "none",
                 "--calibration", str(cal), "--imatrix", str(proxy_cal)])
            score(kind, f"{kind} {target / 1e6:.2f} MB", p, target)

    pairs = []
    for target in targets:
        pr = next(s for s in stores if s["kind"] == "proxy" and s["target"] == target)
        me = next(s for s in stores if s["kind"] == "measured" and s["target"] == target)
        pairs.append(dict(target=target, proxy_bytes=pr["bytes"], measured_bytes=me["bytes"], proxy_kld=pr["kld"],
                          measured_kld=me["kld"], ratio=pr["kld"] / me["kld"] if me["kld"] > 0 else None))
    result = dict(model=name, source=args.model, text=args.text, validation=args.validation, types=types,
                  windows=args.windows, ctx_size=args.ctx_size, correlations=corr, stores=stores, pairs=pairs,
                  timings=timings, command=" ".join(sys.argv))
    (out / "proxy_validation.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (out / "proxy_validation.md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.3f}"
    lines = [f"#### {r['model']}", "",
             f"Candidate types {', '.join(r['types'])}; measured on {r['windows']} windows of {r['ctx_size']} tokens; "
             f"proxy from the whole calibration text.", "",
             "Spearman rank correlation, proxy vs measured:", "",
             "| experts | " + " | ".join(r["types"]) + " | pooled |", "|---|" + "---|" * (len(r["types"]) + 1)]
    for subset, rows in r["correlations"].items():
        cells = [f"{f(rows[t]['rho'])} (n={rows[t]['n']})" for t in r["types"] + ["pooled"]]
        lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    lines += ["", "Stores planned at equal size (`moe convert --target-size`), KL divergence from the source on the "
              "validation text (`moe kld`):", "",
              "| target | proxy-planned KL | measured-planned KL | ratio (≤ 1.1) |", "|---|---|---|---|"]
    for p in r["pairs"]:
        lines.append(f"| {p['target'] / 1e6:.2f} MB | {p['proxy_kld']:.5f} | {p['measured_kld']:.5f} | {f(p['ratio'])} |")
    for s in r["stores"]:
        if s["kind"] == "uniform":
            lines.append(f"| uniform {s['label']} ({s['bytes'] / 1e6:.2f} MB) | {s['kld']:.5f} | | |")
    lines += ["", "Timings: " + ", ".join(f"{k} {v}" for k, v in r["timings"].items()), "",
              f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
