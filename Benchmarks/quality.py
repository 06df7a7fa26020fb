#!/usr/bin/env python3
"""Store size vs perplexity: every uniform expert type against planned per-expert bit-widths.

Converts MODEL (a GGUF file or HF directory, ideally F16/BF16/F32) once per uniform type
(`moe convert --bits T`) and once per planner and target size (`moe convert --target-size S
--planner P`, targets halfway between neighbouring uniform stores unless --targets is given),
measures each store's perplexity on TEXT with `moe perplexity` (llama-perplexity's method),
and writes:

  OUT/quality.json   every store: kind, type/planner, target, bytes, perplexity, increase
  OUT/quality.csv    the same as a table
  OUT/quality.svg    perplexity increase over the f16 store vs store size

and prints a Markdown table for docs/quality.md. With --kld-chunks N each store's mean KL
divergence from the f16 store is measured too (`moe kld`, first N chunks): far steadier than
a perplexity difference where stores are within a few hundredths of a percent of f16.
The planned stores' increase is compared
with the uniform curve interpolated linearly at the same size (the issue's target: at most
0.75 of it).

    python3 Benchmarks/quality.py --model .build-demo/hf \
        --calibration .build-demo/hf.calibration.json \
        --text Models/demo/validation.txt --out docs/figures
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIFORM = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_0", "f16"]


def run(cmd: list[str]) -> str:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout + p.stderr


def perplexity(moe: str, store: str, text: str, ctx: int, threads: int) -> dict:
    return first_json(run([moe, "perplexity", store, "--text", text, "--ctx-size", str(ctx), "--threads", str(threads), "--json"]))


def kld(moe: str, store: str, base: str, text: str, ctx: int, threads: int, chunks: int) -> dict:
    limit = ["--chunks", str(chunks)] if chunks > 0 else []
    return first_json(run([moe, "kld", store, "--base", base, "--text", text, "--ctx-size", str(ctx), "--threads", str(threads),
                           "--json"] + limit))


def first_json(out: str) -> dict:
    start = out.index("{")
    depth = 0
    for i, ch in enumerate(out[start:], start):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return json.loads(out[start:i + 1])
    raise SystemExit("no JSON in moe perplexity output")


def interpolate(points: list[tuple[int, float]], x: int) -> float | None:
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 != x0 else min(y0, y1)
    return None


def kld_note(r: dict) -> str:
    return f", KLD {r['kld']:.6f}" if "kld" in r else ""


SERIES = [("uniform", "#444", "uniform type"), ("knapsack", "#d62728", "planned: knapsack"), ("edgemoe", "#1f77b4", "planned: EdgeMoE")]


def svg(rows: list[dict], path: Path, title: str, key: str = "increase_pct", ylabel: str = "perplexity increase over f16 (log)",
        unit: str = "%", floor: float = 1e-4, series: list[tuple[str, str, str]] = SERIES, labelled: str = "uniform") -> None:
    """A log-scale plot of `key` against store size, one line per (series name, colour, legend) of `series`;
    points of the `labelled` series carry their labels."""
    W, H, L, R, T, B = 760, 460, 80, 170, 40, 60
    rows = [r for r in rows if key in r and r["label"] != "f16"]
    xs = [r["bytes"] / 1e6 for r in rows]
    ys = [max(r[key], floor) for r in rows]
    x0, x1 = min(xs) * 0.97, max(xs) * 1.03
    y0, y1 = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))

    def px(x):
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def py(y):
        return T + (math.log10(y1) - math.log10(max(y, floor))) / (math.log10(y1) - math.log10(y0)) * (H - T - B)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    # grid and axes
    e = math.floor(math.log10(y0))
    while 10 ** e <= y1 * 1.0001:
        y = 10 ** e
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}{unit}</text>')
        e += 1
    step = 2 if x1 - x0 > 10 else 1
    x = math.ceil(x0)
    while x <= x1:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{T}" y2="{H - B}" stroke="#eee"/>')
        out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:g}</text>')
        x += step
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">store size (MB)</text>')
    out.append(f'<text x="18" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 18 {(T + H - B) / 2})">{ylabel}</text>')
    for i, (name, colour, label) in enumerate(series):
        pts = sorted(((r["bytes"] / 1e6, max(r[key], floor), r) for r in rows if r["series"] == name), key=lambda t: t[0])
        if not pts:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(a):.1f},{py(b):.1f}" for j, (a, b, _) in enumerate(pts))
        dash = "" if name == labelled else ' stroke-dasharray="5,3"'
        out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        for a, b, r in pts:
            out.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3.5" fill="{colour}"><title>{r["label"]}: {r["bytes"]} bytes, '
                       f'PPL {r["perplexity"]:.4f} ({r["increase_pct"]:+.3f}%){kld_note(r)}</title></circle>')
            if name == labelled:
                out.append(f'<text x="{px(a) + 6:.1f}" y="{py(b) - 6:.1f}" fill="{colour}">{r["label"]}</text>')
        ly = T + 18 + 20 * i
        out.append(f'<line x1="{W - R + 12}" x2="{W - R + 36}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{W - R + 42}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF file or HF directory to convert (F16/BF16/F32)")
    ap.add_argument("--calibration", required=True, help="moe calibrate output for MODEL (with sensitivities)")
    ap.add_argument("--text", default=str(ROOT / "Models/demo/validation.txt"))
    ap.add_argument("--ctx", type=int, default=256, help="perplexity n_ctx (the demo's docs use 256)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--moe", default=str(ROOT / ".build/release/moe"))
    ap.add_argument("--planners", default="knapsack,edgemoe")
    ap.add_argument("--targets", default="", help="comma-separated store sizes in bytes (default: halfway between uniform stores)")
    ap.add_argument("--fractions", default="0.5", help="where between neighbouring uniform stores to put targets (e.g. 0.25,0.5,0.75)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures")
    ap.add_argument("--title", default="Demo model: store size vs perplexity (validation.txt)")
    ap.add_argument("--kld-chunks", type=int, default=0,
                    help="also measure KL divergence and the paired perplexity ratio against the f16 store on this many chunks (-1: all)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="moe-quality-") as tmp:
        base_store = os.path.join(tmp, "base-f16.moe")

        def measure(series: str, label: str, convert_args: list[str], target: int | None = None, planner: str | None = None):
            store = os.path.join(tmp, re.sub(r"[^A-Za-z0-9_.-]", "_", f"{series}-{label}") + ".moe")
            run([args.moe, "convert", args.model, "-o", store, "--compression", "none", "--calibration", args.calibration] + convert_args)
            size = os.path.getsize(store)
            k = kld(args.moe, store, base_store, args.text, args.ctx, args.threads, args.kld_chunks) if args.kld_chunks != 0 else None
            if k is not None and args.kld_chunks < 0:
                # kld over every chunk scores exactly llama-perplexity's positions: no second pass.
                p = dict(perplexity=k["perplexity"], meanNLL=math.log(k["perplexity"]), standardError=None, scoredTokens=k["scoredTokens"])
            else:
                p = perplexity(args.moe, store, args.text, args.ctx, args.threads)
            row = dict(series=series, label=label, target=target, planner=planner, bytes=size, perplexity=p["perplexity"],
                       nll=p["meanNLL"], stderr=p["standardError"], scored=p["scoredTokens"])
            if series != "uniform":
                plan = json.loads(Path(store[:-4] + ".plan.json").read_text())
                counts: dict[str, int] = {}
                experts = [a["type"] for a in plan["experts"]]
                for t in experts:
                    counts[t] = counts.get(t, 0) + 1
                total = json.loads(Path(args.calibration).read_text())
                n = len(total["layers"]) * total["expertCount"]
                counts[plan["default"]] = counts.get(plan["default"], 0) + n - len(experts)
                row["types"] = dict(sorted(counts.items()))
            if k is not None:
                row.update(kld=k["meanKLD"], kld_stderr=k["standardError"], top1=k["top1Agreement"],
                           paired_pct=100 * (math.exp(k["meanDeltaNLL"]) - 1),
                           paired_se_pct=100 * math.exp(k["meanDeltaNLL"]) * k["deltaNLLStandardError"])
            print(f"  {label}: {size} bytes, PPL {p['perplexity']:.4f}" + (f", KLD {row['kld']:.6f}" if "kld" in row else ""),
                  file=sys.stderr, flush=True)
            rows.append(row)
            if store == base_store:
                return
            os.remove(store)

        # f16 first: the base of every KL divergence.
        run([args.moe, "convert", args.model, "-o", base_store, "--compression", "none", "--bits", "f16"])
        for t in UNIFORM:
            if t == "f16":
                continue
            measure("uniform", t, ["--bits", t])
        p = perplexity(args.moe, base_store, args.text, args.ctx, args.threads)
        rows.append(dict(series="uniform", label="f16", target=None, planner=None, bytes=os.path.getsize(base_store), perplexity=p["perplexity"],
                         nll=p["meanNLL"], stderr=p["standardError"], scored=p["scoredTokens"], **({"kld": 0.0, "kld_stderr": 0.0, "top1": 1.0, "paired_pct": 0.0, "paired_se_pct": 0.0} if args.kld_chunks != 0 else {})))
        uniform = {r["label"]: r for r in rows}
        sizes = sorted(r["bytes"] for r in rows)
        if args.targets:
            targets = [int(t) for t in args.targets.split(",")]
        else:
            fr = [float(f) for f in args.fractions.split(",")]
            ladder = sorted(r["bytes"] for r in rows if r["label"] != "f16")
            targets = [int(a + f * (b - a)) for a, b in zip(ladder, ladder[1:]) for f in fr]
        for planner in args.planners.split(","):
            for target in targets:
                measure(planner, f"{planner} {target / 1e6:.2f}MB", ["--target-size", str(target), "--planner", planner], target, planner)

    base = uniform["f16"]["nll"]
    for r in rows:
        r["increase_pct"] = 100 * (math.exp(r["nll"] - base) - 1)
    curve = [(r["bytes"], r["increase_pct"]) for r in rows if r["series"] == "uniform"]
    for r in rows:
        if r["series"] != "uniform":
            ref = interpolate(curve, r["bytes"])
            r["uniform_increase_pct_at_size"] = ref
            r["ratio_to_uniform"] = r["increase_pct"] / ref if ref and ref > 0 else None
            r["meets_size"] = r["bytes"] <= r["target"]
    (args.out / "quality.json").write_text(json.dumps(dict(model=args.model, text=args.text, ctx=args.ctx, rows=rows), indent=1) + "\n")
    cols = ["series", "label", "target", "bytes", "perplexity", "increase_pct", "uniform_increase_pct_at_size", "ratio_to_uniform", "kld", "top1",
            "paired_pct", "paired_se_pct"]
    with open(args.out / "quality.csv", "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + "\n")
    svg(rows, args.out / "quality.svg", args.title)
    if args.kld_chunks:
        svg(rows, args.out / "quality-kld.svg", args.title.replace("perplexity", "KL divergence from f16"), key="kld",
            ylabel="mean KL divergence from f16, nats/token (log)", unit="", floor=1e-7)

    kcurve = [(r["bytes"], r["kld"]) for r in rows if r["series"] == "uniform" and "kld" in r]
    print("| store | size (bytes) | perplexity | increase over f16 | ± (paired) | uniform at this size | ratio | KLD from f16 | uniform KLD at this size | types |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = r.get("uniform_increase_pct_at_size")
        ratio = r.get("ratio_to_uniform")
        kref = interpolate(kcurve, r["bytes"]) if kcurve and r["series"] != "uniform" else None
        types = ", ".join(f"{k} {v}" for k, v in r.get("types", {}).items())
        kl = f"{r['kld']:.6f}" if "kld" in r else ""
        se = f"{r['paired_se_pct']:.3f}%" if "paired_se_pct" in r else ""
        print(f"| {r['label']} | {r['bytes']} | {r['perplexity']:.4f} | {r['increase_pct']:+.3f}% | {se} | "
              f"{'' if ref is None else f'{ref:+.3f}%'} | {'' if ratio is None else f'{ratio:.2f}'} | {kl} | "
              f"{'' if kref is None else f'{kref:.6f}'} | {types} |")


if __name__ == "__main__":
    main()
