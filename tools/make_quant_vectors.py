#!/usr/bin/env python3
"""Make the quantization test vectors in Tests/Fixtures/quant (read by Tests/QuantizationTests).

Deterministic: every random draw comes from a fixed seed, so re-running the script on the same
versions of numpy, gguf and llama.cpp rewrites byte-identical files. The Swift tests never run
Python; they read only the files written here.

References
----------
* ``gguf.quants`` (PyPI package ``gguf``, numpy): the reference for every dequantizer (IQ2_XXS,
  IQ2_XS, IQ3_XXS and IQ3_S included, on random blocks) and for the
  quantizers it has (q4_0, q4_1, q5_0, q5_1, q8_0, bf16; f16 through numpy's ``astype``).
* llama.cpp's C reference (``ggml/src/ggml-quants.c``), compiled here into a small shared library
  and called through ctypes: the reference for the K-quant quantizers
  (``quantize_row_q{2,3,4,5,6}_K_ref``), which ``gguf.quants`` lacks. It is built with
  ``-O2 -ffp-contract=off -DNDEBUG`` and no ``-march``, so every float operation is a plain IEEE
  single-precision operation in source order, like the Swift port.

Wherever both references exist, the script checks that they agree bit for bit (dequantization of
every type, quantization of the legacy types) and stops if they do not.

Usage::

    python3 tools/make_quant_vectors.py [--llama-cpp DIR] [--out Tests/Fixtures/quant]

``DIR`` is a llama.cpp checkout (default: ``$LLAMA_CPP_DIR`` or the copy vendored by
llama-cpp-python in /opt/moe-cache); ``gcc`` must be on PATH.

Format
------
All binary files are headerless little-endian arrays; ``manifest.json`` says what each holds::

    {
      "format": 1,
      "references": {"gguf": "0.19.0", "numpy": "...", "llama_cpp_commit": "...",
                      "ggml_quants_c_sha256": "..."},
      "f16_to_f32": "f16_to_f32.bin",        # float32[65536]: numpy float16->float32 of every bit pattern
      "f32_to_f16": {"input": "f32_to_f16.in",    # float32[count]
                     "output": "f32_to_f16.out",  # uint16[count]: numpy float32->float16
                     "count": N},
      "dequantize": [                         # one entry per type
        {"type": "q4_K",                      # ggml name, as in GGMLType.description
         "blocks": 10,                        # whole blocks in the input
         "input": "dequant/q4_K.bin",         # uint8[blocks * bytes per block]
         "output": "dequant/q4_K.f32",        # float32[blocks * block size]: gguf.quants.dequantize
         "c_agrees": true}                    # llama.cpp's dequantize_row_* gives the same bits
      ],
      "quantize": {
        "input": "quant/input.f32",           # float32[rows * columns], row-major
        "columns": 256,
        "rows": ["gaussian sigma=1", ...],    # what each row holds
        "gaussian_rows": [0, 1, ...],         # rows drawn from N(0, sigma^2), used for the RMSE check
        "types": [
          {"type": "q4_K",
           "output": "quant/q4_K.bin",        # uint8[rows * row bytes]: reference encoding of the input
           "reference": "llama.cpp quantize_row_q4_K_ref",
           "relative_rmse": 0.0535}           # sqrt(mean((dequant(quant(x)) - x)^2) / mean(x^2)) over
        ]                                     # the gaussian rows, with the reference's own bytes
      }
    }

Random dequantization inputs are random bytes, except that every f16 scale field is replaced by a
random *finite* f16 (any sign, any exponent but 31, so subnormals and zeros are covered) and a few
blocks are all-zero or all-0xFF bytes (with finite scales).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
    from gguf import quants as gq
except ImportError:  # pragma: no cover
    sys.exit("make_quant_vectors.py needs the gguf package: pip install gguf")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LLAMA = "/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp"
QK_K = 256

# name -> (gguf enum, block size, bytes per block, byte offsets of f16 fields in a block)
TYPES = {
    "f32": (QT.F32, 1, 4, []),
    "f16": (QT.F16, 1, 2, []),
    "bf16": (QT.BF16, 1, 2, []),
    "q4_0": (QT.Q4_0, 32, 18, [0]),
    "q4_1": (QT.Q4_1, 32, 20, [0, 2]),
    "q5_0": (QT.Q5_0, 32, 22, [0]),
    "q5_1": (QT.Q5_1, 32, 24, [0, 2]),
    "q8_0": (QT.Q8_0, 32, 34, [0]),
    "q2_K": (QT.Q2_K, 256, 84, [80, 82]),
    "q3_K": (QT.Q3_K, 256, 110, [108]),
    "q4_K": (QT.Q4_K, 256, 144, [0, 2]),
    "q5_K": (QT.Q5_K, 256, 176, [0, 2]),
    "q6_K": (QT.Q6_K, 256, 210, [208]),
    "iq4_nl": (QT.IQ4_NL, 32, 18, [0]),
    "iq4_xs": (QT.IQ4_XS, 256, 136, [0]),
    "mxfp4": (QT.MXFP4, 32, 17, []),
    # Grid types: dequantization only (this runtime reads them, llama.cpp writes them).
    "iq2_xxs": (QT.IQ2_XXS, 256, 66, [0]),
    "iq2_xs": (QT.IQ2_XS, 256, 74, [0]),
    "iq3_xxs": (QT.IQ3_XXS, 256, 98, [0]),
    "iq3_s": (QT.IQ3_S, 256, 110, [0]),
}

# Types quantized by gguf.quants (checked against llama.cpp's C where it has a *_ref quantizer).
NUMPY_QUANTIZED = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "mxfp4"]
# Types quantized only by llama.cpp's C reference.
C_QUANTIZED = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
# Types quantized by llama.cpp's ``quantize_<type>(src, dst, rows, columns, NULL)``: what
# ``llama-quantize`` writes without an imatrix (``quantize_row_iq4_nl_ref`` tries fewer scales).
C_CHUNK_QUANTIZED = ["iq4_nl", "iq4_xs"]

STUBS = r"""
#include <stdlib.h>
#include <stdio.h>
#include "ggml.h"
/* ggml-quants.c refers to these; the *_ref and dequantize_row_* functions used here never call them. */
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "ggml_abort %s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; abort(); }
"""


# --------------------------------------------------------------------------------------------
# llama.cpp's C reference


class LlamaQuants:
    """ggml-quants.c built as a shared library, with typed row functions."""

    def __init__(self, llama_dir: Path, build_dir: Path):
        src = llama_dir / "ggml" / "src"
        inc = llama_dir / "ggml" / "include"
        quants_c = src / "ggml-quants.c"
        if not quants_c.exists():
            sys.exit(f"{quants_c} not found: pass --llama-cpp pointing at a llama.cpp checkout")
        stubs = build_dir / "stubs.c"
        stubs.write_text(STUBS)
        lib = build_dir / "libggml_quants_ref.so"
        cmd = [
            "gcc", "-std=gnu11", "-O2", "-ffp-contract=off", "-fno-fast-math", "-DNDEBUG", "-fPIC",
            "-shared", f"-I{inc}", f"-I{src}", str(quants_c), str(stubs), "-lm", "-o", str(lib),
        ]
        subprocess.run(cmd, check=True)
        self.lib = ctypes.CDLL(str(lib))
        self.sha256 = hashlib.sha256(quants_c.read_bytes()).hexdigest()
        try:
            self.commit = subprocess.run(
                ["git", "-C", str(llama_dir), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
            ).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            self.commit = "unknown"

    def quantize(self, name: str, x: np.ndarray) -> np.ndarray:
        _, block, size, _ = TYPES[name]
        x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        out = np.zeros(x.size // block * size, dtype=np.uint8)
        fn = getattr(self.lib, f"quantize_row_{name}_ref")
        fn.restype = None
        fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
        return out

    def quantize_rows(self, name: str, x: np.ndarray) -> np.ndarray:
        """``quantize_<name>(x, out, rows, columns, NULL)`` over the rows of the 2-D ``x``."""
        _, block, size, _ = TYPES[name]
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(x.size // block * size, dtype=np.uint8)
        fn = getattr(self.lib, f"quantize_{name}")
        fn.restype = ctypes.c_size_t
        n = fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.shape[0]),
               ctypes.c_int64(x.shape[1]), None)
        assert n == out.size, (name, n, out.size)
        return out

    def dequantize(self, name: str, data: np.ndarray) -> np.ndarray:
        _, block, size, _ = TYPES[name]
        data = np.ascontiguousarray(data, dtype=np.uint8).ravel()
        out = np.zeros(data.size // size * block, dtype=np.float32)
        fn = getattr(self.lib, f"dequantize_row_{name}")
        fn.restype = None
        fn(data.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(out.size))
        return out


# --------------------------------------------------------------------------------------------
# inputs


def random_finite_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random finite float16 bit patterns (any sign and exponent except 31)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exponent_all_ones = (bits & 0x7C00) == 0x7C00
    bits[exponent_all_ones] &= np.uint16(0xBFFF)  # clear the exponent's top bit: finite
    return bits


def dequant_input(name: str, rng: np.random.Generator) -> np.ndarray:
    """Random blocks of type `name`, shaped (blocks, bytes per block)."""
    _, block, size, f16_offsets = TYPES[name]
    blocks = 16 if block == 1 else (16 if block == 32 else 8)
    if block == 1:  # plain element types: 256 random elements per "block" row
        count = 256
        if name == "f32":
            values = np.concatenate([
                rng.standard_normal(200).astype(np.float32),
                np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38], dtype=np.float32),
                rng.integers(0, 1 << 32, size=count - 208, dtype=np.uint64).astype(np.uint32).view(np.float32),
            ])
            return values.view(np.uint8).reshape(1, -1)
        bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
        return bits.view(np.uint8).reshape(1, -1)
    data = rng.integers(0, 256, size=(blocks, size), dtype=np.uint16).astype(np.uint8)
    data[0, :] = 0x00
    data[1, :] = 0xFF
    for off in f16_offsets:
        scales = random_finite_f16(rng, blocks)
        # Keep a few blocks at ordinary model magnitudes too (|d| around 1e-3 .. 1e-1).
        scales[2:5] = np.array([0.0123, -0.00042, 0.087], dtype=np.float16).view(np.uint16)
        data[:, off:off + 2] = scales.view(np.uint8).reshape(blocks, 2)
    if name == "mxfp4":
        data[:, 0] = np.array([0, 1, 2, 127, 255, 120, 130, 64] + list(rng.integers(0, 256, blocks - 8)), dtype=np.uint8)
    return data


def quant_input(rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[int]]:
    """Rows of 256 floats: Gaussian rows at several scales, then edge cases."""
    cols = QK_K
    rows: list[np.ndarray] = []
    labels: list[str] = []
    gaussian: list[int] = []
    for sigma in [1.0, 1.0, 1.0, 1.0, 0.02, 0.02, 0.02, 0.02, 0.001, 0.001, 3.0, 3.0, 50.0, 0.05, 0.05, 0.05]:
        gaussian.append(len(rows))
        rows.append(rng.standard_normal(cols).astype(np.float32) * np.float32(sigma))
        labels.append(f"gaussian sigma={sigma}")

    def add(label: str, values) -> None:
        rows.append(np.asarray(values, dtype=np.float32).reshape(cols))
        labels.append(label)

    add("zeros", np.zeros(cols))
    add("constant 0.5", np.full(cols, 0.5))
    add("constant -0.25", np.full(cols, -0.25))
    spike = np.zeros(cols, dtype=np.float32)
    spike[[3, 77, 140, 255]] = [1.0, -2.5, 0.75, 4.0]
    add("sparse spikes", spike)
    add("all positive (uniform 0.1..1)", rng.uniform(0.1, 1.0, cols))
    add("all negative (uniform -1..-0.1)", rng.uniform(-1.0, -0.1, cols))
    outlier = rng.standard_normal(cols).astype(np.float32) * np.float32(0.01)
    outlier[[10, 200]] = [5.0, -7.0]
    add("gaussian 0.01 with outliers", outlier)
    mixed = rng.standard_normal(cols).astype(np.float32)
    mixed *= np.repeat(np.array([1e-4, 1.0, 1e-6, 10.0, 1e-3, 0.1, 1e-5, 2.0], dtype=np.float32), 32)
    add("sub-blocks of very different scales", mixed)
    add("tiny (1e-9 scale)", rng.standard_normal(cols) * 1e-9)
    add("ramp -1..1", np.linspace(-1.0, 1.0, cols))
    add("integers -8..7", rng.integers(-8, 8, cols))
    add("large (sigma 1000)", rng.standard_normal(cols) * 1000.0)
    return np.stack(rows).astype(np.float32), labels, gaussian


def f32_to_f16_input(rng: np.random.Generator) -> np.ndarray:
    """Random float32 bit patterns plus rounding edge cases around float16's range."""
    randoms = rng.integers(0, 1 << 32, size=4096, dtype=np.uint64).astype(np.uint32)
    # Floats spread over half's exponent range (2^-26 .. 2^17), both signs, random mantissas.
    exps = rng.integers(127 - 26, 127 + 17, size=4096, dtype=np.uint32)
    mant = rng.integers(0, 1 << 23, size=4096, dtype=np.uint32)
    sign = rng.integers(0, 2, size=4096, dtype=np.uint32) << np.uint32(31)
    spread = sign | (exps << np.uint32(23)) | mant
    edges = np.array([
        0.0, -0.0, 65504.0, 65519.996, 65520.0, -65520.0, 65536.0, 6.1035156e-05, 6.097555e-05,
        5.9604645e-08, 2.9802322e-08, 2.9802326e-08, 8.940697e-08, 1.0, 1.0004883, 1.0009766,
        1.0014648, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e30,
    ], dtype=np.float32).view(np.uint32)
    return np.concatenate([randoms, spread, edges]).view(np.float32)


# --------------------------------------------------------------------------------------------


def numpy_dequantize(name: str, data: np.ndarray) -> np.ndarray:
    qtype = TYPES[name][0]  # gguf.quants takes raw bytes, rows along the last axis
    with np.errstate(over="ignore"):  # mxfp4 with e = 255 overflows to inf, in C as well
        return np.asarray(gq.dequantize(data.view(np.uint8), qtype), dtype=np.float32).ravel()


def numpy_quantize(name: str, x: np.ndarray) -> np.ndarray:
    qtype = TYPES[name][0]
    return np.asarray(gq.quantize(x, qtype)).view(np.uint8).ravel()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def relative_rmse(x: np.ndarray, y: np.ndarray) -> float:
    x64 = x.astype(np.float64)
    return float(np.sqrt(np.mean((y.astype(np.float64) - x64) ** 2) / np.mean(x64 ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_DIR", DEFAULT_LLAMA))
    parser.add_argument("--out", default=str(ROOT / "Tests" / "Fixtures" / "quant"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "dequant").mkdir(parents=True, exist_ok=True)
    (out / "quant").mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        c = LlamaQuants(Path(args.llama_cpp), Path(tmp))
        manifest: dict = {
            "format": 1,
            "references": {
                "gguf": gguf.__version__ if hasattr(gguf, "__version__") else _dist_version("gguf"),
                "numpy": np.__version__,
                "llama_cpp_commit": c.commit,
                "ggml_quants_c_sha256": c.sha256,
            },
        }

        # f16 -> f32, every bit pattern.
        all_halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        (out / "f16_to_f32.bin").write_bytes(all_halves.view(np.float16).astype(np.float32).tobytes())
        manifest["f16_to_f32"] = "f16_to_f32.bin"

        # f32 -> f16 on random and edge-case floats.
        rng = np.random.default_rng(0x5EED_F16)
        floats = f32_to_f16_input(rng)
        with np.errstate(over="ignore", invalid="ignore"):
            halves = floats.astype(np.float16).view(np.uint16)
        (out / "f32_to_f16.in").write_bytes(floats.tobytes())
        (out / "f32_to_f16.out").write_bytes(halves.tobytes())
        manifest["f32_to_f16"] = {"input": "f32_to_f16.in", "output": "f32_to_f16.out", "count": int(floats.size)}

        # Dequantization.
        entries = []
        for i, name in enumerate(TYPES):
            rng = np.random.default_rng(1000 + i)
            data = dequant_input(name, rng)
            ref = numpy_dequantize(name, data)
            c_agrees = None
            if name not in ("f32", "f16", "bf16"):
                c_out = c.dequantize(name, data)
                c_agrees = same_bits(ref, c_out)
                if not c_agrees:
                    bad = np.nonzero(ref.view(np.uint32) != c_out.view(np.uint32))[0]
                    sys.exit(f"{name}: gguf.quants and llama.cpp dequantize differ at {bad[:8]}: "
                             f"{ref[bad[:4]]} vs {c_out[bad[:4]]}")
            (out / "dequant" / f"{name}.bin").write_bytes(data.tobytes())
            (out / "dequant" / f"{name}.f32").write_bytes(ref.tobytes())
            block = TYPES[name][1]
            entry = {"type": name, "blocks": int(ref.size // block), "input": f"dequant/{name}.bin",
                     "output": f"dequant/{name}.f32"}
            if c_agrees is not None:
                entry["c_agrees"] = c_agrees
            entries.append(entry)
        manifest["dequantize"] = entries

        # Quantization.
        rng = np.random.default_rng(0x0A17)
        x, labels, gaussian = quant_input(rng)
        (out / "quant" / "input.f32").write_bytes(x.tobytes())
        types = []
        for name in NUMPY_QUANTIZED + C_QUANTIZED + C_CHUNK_QUANTIZED:
            if name in NUMPY_QUANTIZED:
                ref = numpy_quantize(name, x)
                reference = "gguf.quants.quantize" if name != "f16" else "numpy astype(float16)"
                if name.startswith("q") or name == "mxfp4":
                    c_bytes = c.quantize(name, x)
                    if not np.array_equal(ref, c_bytes):
                        sys.exit(f"{name}: gguf.quants and llama.cpp quantize_row_{name}_ref differ")
                    reference += f" == llama.cpp quantize_row_{name}_ref"
            elif name in C_CHUNK_QUANTIZED:
                ref = c.quantize_rows(name, x)
                reference = f"llama.cpp quantize_{name}(..., NULL)"
            else:
                ref = c.quantize(name, x)
                reference = f"llama.cpp quantize_row_{name}_ref"
            (out / "quant" / f"{name}.bin").write_bytes(ref.tobytes())
            deq = numpy_dequantize(name, ref.reshape(x.shape[0], -1)).reshape(x.shape)
            if name.startswith(("q", "iq")) or name == "mxfp4":
                assert same_bits(deq.ravel(), c.dequantize(name, ref))
            types.append({"type": name, "output": f"quant/{name}.bin", "reference": reference,
                          "relative_rmse": relative_rmse(x[gaussian], deq[gaussian])})
        manifest["quantize"] = {"input": "quant/input.f32", "columns": int(x.shape[1]), "rows": labels,
                                "gaussian_rows": gaussian, "types": types}

    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1024:.0f} KiB)")
    for t in types:
        print(f"  {t['type']:5s} relative RMSE {t['relative_rmse']:.5f}  ({t['reference']})")


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


if __name__ == "__main__":
    main()
