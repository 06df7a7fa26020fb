#!/usr/bin/env python3
"""Make the importance-weighted (and plain) quantization vectors in Tests/Fixtures/quant/imatrix.

llama.cpp's ``llama-quantize --imatrix`` quantizes each weight matrix with
``ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)``, where ``imatrix`` holds
one importance weight per column (the mean square of the inputs that column multiplies). This
script calls that very function in llama.cpp's own ``libggml-base.so`` through ctypes, so the
bytes are ggml's. The Swift tests (Tests/QuantizationTests/WeightedQuantizeTests.swift) read the
files and never run Python.

Usage::

    python3 tools/make_imatrix_vectors.py [--lib /opt/moe-cache/llama.cpp-build/bin/libggml-base.so]

Files (headerless little-endian)::

    input.f32        float32[rows * columns]: the rows to quantize
    importance.f32   float32[sets * columns]: importance vectors, one per set
    <type>.<set>.bin uint8[rows * row bytes]: ggml_quantize_chunk(type, input, importance[set])
    <type>.plain.bin uint8[rows * row bytes]: ggml_quantize_chunk(type, input, NULL) (what
                     llama-quantize writes without --imatrix; "set": null in the manifest)
    manifest.json    what each holds

Deterministic: numpy's default generator with a fixed seed.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "Tests" / "Fixtures" / "quant" / "imatrix"
# ggml_type ids (ggml.h) and bytes per 256 elements.
TYPES = {"q2_K": (10, 84), "q3_K": (11, 110), "q4_K": (12, 144), "q5_K": (13, 176), "q6_K": (14, 210),
         "iq4_nl": (20, 8 * 18), "iq4_xs": (23, 136)}
COLUMNS = 512


def rows(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    out, names = [], []
    def add(name, row):
        names.append(name)
        out.append(np.asarray(row, dtype=np.float32))
    add("gaussian sigma=1", rng.normal(0, 1, COLUMNS))
    add("gaussian sigma=0.02", rng.normal(0, 0.02, COLUMNS))
    add("student-t df=3 (outliers)", rng.standard_t(3, COLUMNS) * 0.05)
    add("positive only", np.abs(rng.normal(0, 1, COLUMNS)))
    r = rng.normal(0, 1, COLUMNS)
    r[:256] *= 1e-3
    add("small first block", r)
    r = rng.normal(0, 1, COLUMNS)
    r[100:140] = 0
    add("zero run", r)
    r = rng.normal(0, 1, COLUMNS)
    r[:256] = 0
    r[300:332] = 1e-20
    add("zero first super-block, negligible sub-block", r)
    return np.stack(out), names


def importances(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    sets, names = [], []
    sets.append(rng.lognormal(0, 1, COLUMNS)); names.append("lognormal sigma=1")
    w = rng.lognormal(0, 0.3, COLUMNS) * 1e-3
    w[rng.choice(COLUMNS, 8, replace=False)] *= 1000
    sets.append(w); names.append("few large columns (1000x)")
    w = rng.lognormal(0, 1, COLUMNS)
    w[200:260] = 0
    sets.append(w); names.append("some zero columns")
    return np.stack(sets).astype(np.float32), names


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="/opt/moe-cache/llama.cpp-build/bin/libggml-base.so")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    lib = ctypes.CDLL(args.lib)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(20261130)
    x, row_names = rows(rng)
    w, set_names = importances(rng)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "input.f32").write_bytes(x.tobytes())
    (args.out / "importance.f32").write_bytes(w.tobytes())
    outputs = []
    for name, (tid, block) in TYPES.items():
        for s in [*range(len(w)), None]:
            dst = np.zeros(len(x) * COLUMNS // 256 * block, dtype=np.uint8)
            imp = None if s is None else np.ascontiguousarray(w[s])
            n = lib.ggml_quantize_chunk(tid, x.ctypes.data, dst.ctypes.data, 0, len(x), COLUMNS,
                                        None if imp is None else imp.ctypes.data)
            assert n == dst.size, (name, n, dst.size)
            path = f"{name}.{'plain' if s is None else s}.bin"
            (args.out / path).write_bytes(dst.tobytes())
            outputs.append({"type": name, "set": s, "output": path})
    lib_bytes = Path(args.lib).resolve().read_bytes()
    manifest = {
        "format": 1,
        "reference": "ggml_quantize_chunk in llama.cpp's libggml-base (llama-cpp-python 0.3.36 vendor tree)",
        "library_sha256": hashlib.sha256(lib_bytes).hexdigest(),
        "columns": COLUMNS,
        "rows": row_names,
        "importance_sets": set_names,
        "input": "input.f32",
        "importance": "importance.f32",
        "outputs": outputs,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(outputs)} outputs to {args.out}")


if __name__ == "__main__":
    main()
