#!/usr/bin/env python3
"""Write a random-weight Mixtral-layout GGUF model for benchmarks, in Q4_K_M and Q8_0.

Usage:
    python tools/make_bench_model.py [--out DIR] [--seed N] [--threads N]
                                     [--layers N] [--experts N] [--types q4_k_m,q8_0,q3_k_m,iq4_xs]
                                     [--name PREFIX] [--keep-f16] [--check]
                                     [--layout many-experts [--hidden N] [--expert-ffn N]]

Writes DIR/bench-moe-f16.gguf (deleted afterwards unless --keep-f16), then quantizes it with
llama.cpp's own quantizer (through the llama-cpp-python binding) into

    DIR/bench-moe-q4_k_m.gguf    (about 1.45 GB)
    DIR/bench-moe-q8_0.gguf      (about 2.6 GB)

or the file types named by --types (e.g. q3_k_m, iq4_xs: DIR/bench-moe-q3_k_m.gguf, ...).
With --name PREFIX the files are PREFIX-f16.gguf, PREFIX-q4_k_m.gguf, ...; --types picks the
quantized files. The memory-pressure benchmark (Benchmarks/pressure.py) uses

    --layers 10 --experts 16 --direct-q4k --name bench-moe-e16     (5.8 B parameters, 3.25 GB)

(--direct-q4k writes Q4_K blocks of random values directly; llama.cpp's quantizer needs about an
hour for this model on a busy 2-core machine, so the pressure model skips it.)

DIR defaults to /work/bench-models (outside git: never commit model files). With --check, each
quantized file is loaded by llama.cpp, which greedily generates a few tokens.

Requirements: Benchmarks/requirements.txt (numpy, gguf; llama-cpp-python for the quantizer,
built from source with CMAKE_ARGS="-DGGML_NATIVE=ON").

The model (see docs/performance.md):

    arch llama with experts (Mixtral layout), vocab 32000, hidden 2048, 8 layers,
    attention 16 query heads / 4 KV heads of 128, 8 experts of ffn 5632, top-2,
    untied output, context 4096, RoPE base 1e6.

    2.43 B parameters in all; per token about 0.70 B are read (attention, 2 of 8 experts,
    output; the embedding row is one lookup): ~0.43 GB at Q4_K_M, ~0.74 GB at Q8_0. That is
    the regime of a real MoE decode on a small machine: memory-bound, experts dominate.

With --layout many-experts it writes only DIR/bench-many-experts-f16.gguf: the expert count of a
Qwen3-30B-A3B (48 layers x 128 experts, top-8) at tiny dimensions (hidden 128, expert ffn 64,
vocab 512; 0.16 B parameters, 0.3 GB), to measure what grows with the number of experts, such as
`moe calibrate` (docs/quality.md), without the size of the real model. --hidden and --expert-ffn
change those two sizes (--hidden 256 --expert-ffn 32, also 0.3 GB, gives gate and up rows of 256
weights, so K-quants apply to them without the 32-block fallback; docs/quality.md's cost figures).
The file is DIR/NAME-f16.gguf with NAME bench-many-experts, or --name.

Weights are normal with std 0.02 (norm weights 1), so activations stay finite and of order 1.
Router rows have structure so that routing is not uniform: expert e's row has norm that grows
with e (0.5x to 1.5x), and pairs of experts share a component, so some experts are more
popular and pairs tend to fire together. Everything comes from one seed: the same command
writes the same bytes.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Dims:
    vocab: int = 32000
    hidden: int = 2048
    layers: int = 8
    heads: int = 16
    kv_heads: int = 4
    experts: int = 8
    experts_used: int = 2
    expert_ffn: int = 5632
    context: int = 4096
    rope_base: float = 1_000_000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


# Qwen3-30B-A3B's expert count (48 layers x 128 experts, top-8) at tiny dimensions.
MANY_EXPERTS = Dims(vocab=512, hidden=128, layers=48, heads=4, kv_heads=2, experts=128, experts_used=8, expert_ffn=64, context=1024)

WEIGHT_STD = 0.02


def tensor_plan(d: Dims) -> list[tuple[str, tuple[int, ...], type]]:
    """(GGUF name, numpy shape (slowest first), dtype) of every tensor, in file order.

    GGUF lists dims fastest first, so numpy shape (n_expert, n_ff, n_embd) is ggml ne
    {n_embd, n_ff, n_expert}: expert e of a stacked tensor is one contiguous slab.
    """
    hd = d.head_dim
    plan: list[tuple[str, tuple[int, ...], type]] = [("token_embd.weight", (d.vocab, d.hidden), np.float16)]
    for i in range(d.layers):
        p = f"blk.{i}."
        plan += [
            (p + "attn_norm.weight", (d.hidden,), np.float32),
            (p + "attn_q.weight", (d.heads * hd, d.hidden), np.float16),
            (p + "attn_k.weight", (d.kv_heads * hd, d.hidden), np.float16),
            (p + "attn_v.weight", (d.kv_heads * hd, d.hidden), np.float16),
            (p + "attn_output.weight", (d.hidden, d.heads * hd), np.float16),
            (p + "ffn_norm.weight", (d.hidden,), np.float32),
            (p + "ffn_gate_inp.weight", (d.experts, d.hidden), np.float32),
            (p + "ffn_gate_exps.weight", (d.experts, d.expert_ffn, d.hidden), np.float16),
            (p + "ffn_up_exps.weight", (d.experts, d.expert_ffn, d.hidden), np.float16),
            (p + "ffn_down_exps.weight", (d.experts, d.hidden, d.expert_ffn), np.float16),
        ]
    plan += [("output_norm.weight", (d.hidden,), np.float32), ("output.weight", (d.vocab, d.hidden), np.float16)]
    return plan


def make_tensor(name: str, shape: tuple[int, ...], dtype: type, rng: np.random.Generator, d: Dims) -> np.ndarray:
    if name.endswith("norm.weight"):
        return np.ones(shape, dtype=dtype)
    if name.endswith("ffn_gate_inp.weight"):
        # Router: popularity skew (row norms 0.5x..1.5x) and pairwise co-activation (shared part).
        pairs = rng.standard_normal((d.experts // 2 + 1, d.hidden), dtype=np.float32)
        own = rng.standard_normal((d.experts, d.hidden), dtype=np.float32)
        rows = 0.6 * pairs[np.arange(d.experts) // 2] + 0.8 * own
        scale = np.linspace(0.5, 1.5, d.experts, dtype=np.float32)[:, None]
        return (WEIGHT_STD * scale * rows).astype(dtype)
    out = np.empty(shape, dtype=dtype)
    # Generate a slab at a time so peak memory stays near one f32 expert.
    flat = out.reshape(-1, shape[-1])
    step = max(1, (1 << 24) // shape[-1])
    for r in range(0, flat.shape[0], step):
        rows = min(step, flat.shape[0] - r)
        if FAST_POOL is not None:
            # --fast-fill: a window of one shared normal pool at a random offset (memcpy speed).
            n = rows * shape[-1]
            offset = int(rng.integers(0, FAST_POOL.size - n + 1))
            flat[r : r + rows] = FAST_POOL[offset : offset + n].reshape(rows, shape[-1])
            continue
        block = rng.standard_normal((rows, shape[-1]), dtype=np.float32)
        block *= WEIGHT_STD
        flat[r : r + block.shape[0]] = block
    return out


# Set by --fast-fill: normal(0, WEIGHT_STD) values that weight tensors take windows of.
FAST_POOL = None


def vocabulary(n: int) -> tuple[list[bytes], list[float], list[int]]:
    """A SentencePiece-style (tokenizer.ggml.model = llama) vocabulary of exactly n tokens.

    <unk>, <s>, </s>, the 256 byte tokens <0xNN>, then made-up pieces: printable ASCII
    characters with and without the word-start mark, then ▁-prefixed letter strings.
    """
    normal, unknown, control, byte = 1, 2, 3, 6
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [unknown, control, control]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    types += [byte] * 256
    seen = set(tokens)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def pieces():
        for c in map(chr, range(33, 127)):
            yield c
            yield "\u2581" + c
        length = 2
        while True:
            # all letter strings of this length, in a fixed order
            for i in range(len(letters) ** length):
                s, k = "", i
                for _ in range(length):
                    s = letters[k % 26] + s
                    k //= 26
                yield "\u2581" + s
                yield s
            length += 1

    for piece in pieces():
        if len(tokens) == n:
            break
        encoded = piece.encode()
        if encoded in seen:
            continue
        seen.add(encoded)
        tokens.append(encoded)
        types.append(normal)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(n - 259)]
    return tokens, scores, types


# --direct-q4k: Q4_K blocks written directly (no f16 file, no quantizer). Block of 256 weights:
# f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of 4-bit values; a weight
# is d·scale·q − dmin·min. Random scales, mins and values with d = 1.5e-4 and dmin = 7.5·d give
# weights of mean ~0 and std ~0.04 (the f16 model's are 0.02).
Q4K_BLOCK, Q4K_BYTES = 256, 144


def q4k_blocks(shape: tuple[int, ...], rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
    blocks = int(np.prod(shape)) // Q4K_BLOCK
    out = np.empty((blocks, Q4K_BYTES), dtype=np.uint8)
    step = max(1, pool.size // Q4K_BYTES // 2)
    for b in range(0, blocks, step):
        n = min(step, blocks - b)
        offset = int(rng.integers(0, pool.size - n * Q4K_BYTES + 1))
        out[b : b + n] = pool[offset : offset + n * Q4K_BYTES].reshape(n, Q4K_BYTES)
    scales = out[:, :4].view(np.float16)
    scales[:, 0] = 1.5e-4
    scales[:, 1] = 7.5 * 1.5e-4
    return out


def write_f16(path: str, d: Dims, seed: int, direct_q4k: bool = False) -> None:
    """Writes the model in F16, or with --direct-q4k every weight matrix as Q4_K blocks."""
    from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType

    w = GGUFWriter(path, arch="llama")
    w.add_name("swiftmoe-bench-moe")
    w.add_block_count(d.layers)
    w.add_context_length(d.context)
    w.add_embedding_length(d.hidden)
    w.add_feed_forward_length(d.expert_ffn)
    w.add_head_count(d.heads)
    w.add_head_count_kv(d.kv_heads)
    w.add_key_length(d.head_dim)
    w.add_value_length(d.head_dim)
    w.add_rope_dimension_count(d.head_dim)
    w.add_rope_freq_base(d.rope_base)
    w.add_layer_norm_rms_eps(d.norm_eps)
    w.add_expert_count(d.experts)
    w.add_expert_used_count(d.experts_used)
    w.add_vocab_size(d.vocab)
    w.add_file_type(LlamaFileType.MOSTLY_Q4_K_S if direct_q4k else LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(2)
    tokens, scores, types = vocabulary(d.vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    plan = tensor_plan(d)

    def as_q4k(name: str, shape: tuple[int, ...], dtype: type) -> bool:
        return direct_q4k and dtype == np.float16 and shape[-1] % Q4K_BLOCK == 0

    for name, shape, dtype in plan:
        if as_q4k(name, shape, dtype):
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) // Q4K_BLOCK * Q4K_BYTES, raw_dtype=GGMLQuantizationType.Q4_K)
        else:
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            w.add_tensor_info(name, shape, np.dtype(dtype), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    total = sum(int(np.prod(s)) for _, s, _ in plan)
    done = 0
    start = time.time()
    seeds = np.random.SeedSequence(seed).spawn(len(plan))
    pool = None
    for (name, shape, dtype), ss in zip(plan, seeds):
        if as_q4k(name, shape, dtype):
            if pool is None:
                pool = np.random.default_rng(seed).integers(0, 256, size=64 << 20, dtype=np.uint8)
            w.write_tensor_data(q4k_blocks(shape, np.random.default_rng(ss), pool))
        else:
            w.write_tensor_data(make_tensor(name, shape, dtype, np.random.default_rng(ss), d))
        done += int(np.prod(shape))
        if name.endswith("exps.weight") or name in ("token_embd.weight", "output.weight"):
            print(f"  f16 {done / total:6.1%}  {name}  ({time.time() - start:.0f} s)", flush=True)
    w.close()
    print(f"wrote {path}: {total / 1e9:.3f} B parameters, {os.path.getsize(path) / 1e9:.2f} GB", flush=True)


def quantize(src: str, dst: str, ftype_name: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = threads
    start = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({ftype_name}) failed with {rc}")
    print(f"wrote {dst}: {os.path.getsize(dst) / 1e9:.2f} GB in {time.time() - start:.0f} s", flush=True)


def check(path: str, threads: int) -> None:
    """Load with llama.cpp and greedily generate a few tokens from fixed ids."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=256, n_threads=threads, n_threads_batch=threads, verbose=False)
    n_vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:
        # eval() keeps no logits unless logits_all: read the last output row from the context.
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))

    llm.eval([1] + list(range(300, 316)))
    out = []
    for _ in range(8):
        logits = last_logits()
        if not np.all(np.isfinite(logits)):
            raise SystemExit(f"{path}: llama.cpp produced non-finite logits")
        out.append(int(np.argmax(logits)))
        llm.eval([out[-1]])
    print(f"check {os.path.basename(path)}: llama.cpp generated {out} "
          f"(logit std {float(np.std(last_logits())):.3f})", flush=True)
    del llm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/bench-models", help="output directory (outside git)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="quantizer threads")
    ap.add_argument("--layers", type=int, default=Dims.layers)
    ap.add_argument("--experts", type=int, default=Dims.experts, help="experts per layer (top-2 either way)")
    ap.add_argument("--name", default=None, help="file name prefix (default bench-moe; many-experts: bench-many-experts)")
    ap.add_argument("--hidden", type=int, default=MANY_EXPERTS.hidden,
                    help="many-experts: hidden size (a multiple of 4 x 16; 256 lets gate/up rows take K-quants)")
    ap.add_argument("--expert-ffn", type=int, default=MANY_EXPERTS.expert_ffn, help="many-experts: expert FFN size")
    ap.add_argument("--direct-q4k", action="store_true",
                    help="write NAME-q4_k.gguf directly: every weight matrix Q4_K with random blocks (no f16 file, no "
                         "quantizer: seconds instead of an hour for a 5.8 B model on a busy 2-core machine)")
    ap.add_argument("--fast-fill", action="store_true",
                    help="weights are windows of one 32M-value random pool at random offsets (router rows stay fresh): "
                         "minutes less for multi-GB models; different bytes from the default")
    ap.add_argument("--keep-f16", action="store_true", help="keep the F16 intermediate file")
    ap.add_argument("--check", action="store_true", help="load each file with llama.cpp and generate")
    ap.add_argument("--types", default="q4_k_m,q8_0",
                    help="comma-separated llama.cpp file types to write (q4_k_m, q8_0, q3_k_m, iq4_xs, ...)")
    ap.add_argument("--layout", choices=["mixtral", "many-experts"], default="mixtral",
                    help="mixtral: the benchmark model above; many-experts: 48 x 128 experts at tiny dims (F16 only)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    if args.layout == "many-experts":
        if args.hidden % (MANY_EXPERTS.heads * 16) or args.hidden <= 0 or args.expert_ffn <= 0 or args.expert_ffn % 32:
            raise SystemExit("--hidden must be a positive multiple of 64 and --expert-ffn of 32")
        d = replace(MANY_EXPERTS, hidden=args.hidden, expert_ffn=args.expert_ffn)
        path = os.path.join(args.out, f"{args.name or 'bench-many-experts'}-f16.gguf")
        print(f"model: {d}", flush=True)
        write_f16(path, d, args.seed)
        if args.check:
            check(path, args.threads)
        return
    args.name = args.name or "bench-moe"
    d = Dims(layers=args.layers, experts=args.experts)
    if args.fast_fill:
        global FAST_POOL
        FAST_POOL = (np.random.default_rng(args.seed).standard_normal(1 << 25, dtype=np.float32) * WEIGHT_STD).astype(np.float16)
    f16 = os.path.join(args.out, f"{args.name}-f16.gguf")
    wanted = [t.strip() for t in args.types.split(",") if t.strip()]
    if not wanted:
        raise SystemExit("--types: name at least one llama.cpp file type (q4_k_m, q8_0, q3_k_m, iq4_xs, ...)")
    targets = [(f"{args.name}-{t}.gguf", f"LLAMA_FTYPE_MOSTLY_{t.upper()}") for t in wanted]
    print(f"model: {d}", flush=True)
    if args.direct_q4k:
        path = os.path.join(args.out, f"{args.name}-q4_k.gguf")
        write_f16(path, d, args.seed, direct_q4k=True)
        if args.check:
            check(path, args.threads)
        return
    write_f16(f16, d, args.seed)
    for name, ftype in targets:
        quantize(f16, os.path.join(args.out, name), ftype, args.threads)
    if not args.keep_f16:
        os.remove(f16)
    if args.check:
        for name, _ in targets:
            check(os.path.join(args.out, name), args.threads)


if __name__ == "__main__":
    sys.exit(main())
