#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (tools/fuzz/, docs/fuzzing.md) under Tests/Fuzz/<target>/.

Small valid inputs, so mutation starts from files that reach deep into each parser:
  * a tiny Mixtral-layout model (1 layer, 2 experts, hidden 8) as GGUF (written with the
    `gguf` package) and as a Hugging Face directory (config.json + safetensors, written with
    the `safetensors` package), random weights;
  * tokenizers trimmed from Tests/Fixtures/tokenizers (first N ids; merges whose parts and
    result survive), SentencePiece models trimmed with sentencepiece's protobuf, and GGUF
    tokenizer metadata trimmed the same way;
  * the chat templates of Tests/Fixtures/chat-templates;
  * a bit plan written by hand from docs (format swiftmoe-bit-plan version 1).
Stores, traces and calibration files need the `moe` binary: pass --moe PATH (after
`swift build --product moe`) and they are made by `moe convert`, `moe trace record`,
`moe trace export` and `moe calibrate` from the tiny GGUF.

Usage: python3 tools/make_fuzz_seeds.py [--moe .build/debug/moe]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType
from safetensors.numpy import save as st_save

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
OUT = ROOT / "Tests" / "Fuzz"
MARKER = b"\n#@FILE@#\n"  # FuzzSupport's Fuzz.marker: one input standing for several files

H, FFN, HEADS, KV, HD, E, K, LAYERS, VOCAB = 8, 8, 2, 1, 4, 2, 1, 1, 24
rng = np.random.default_rng(19)


def rand(*shape, dtype=np.float16):
    return (rng.standard_normal(shape) * 0.5).astype(dtype)


def write(target: str, name: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def field_value(f):
    return f.contents()


def tokenizer_fields(reader: GGUFReader, n: int):
    """tokenizer.* metadata of a GGUF, arrays cut to the first n tokens."""
    out = []
    for k, f in reader.fields.items():
        if not k.startswith("tokenizer."):
            continue
        v = f.contents()
        t = f.types[0]
        if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            v = v[:n]
        elif k == "tokenizer.ggml.merges":
            kept = set(reader.fields["tokenizer.ggml.tokens"].contents()[:n])
            v = [m for m in v if all(p in kept for p in m.split(" ", 1)) and m.replace(" ", "") in kept][:n]
        elif k.endswith("_token_id") and isinstance(v, int) and v >= n:
            v = n - 1
        sub = f.types[1] if t == GGUFValueType.ARRAY and len(f.types) > 1 else None
        out.append((k, v, t, sub))
    return out


def add_fields(w: GGUFWriter, fields) -> None:
    for k, v, t, sub in fields:
        if t == GGUFValueType.ARRAY:
            w.add_key_value(k, list(v), t, sub_type=sub)
        else:
            w.add_key_value(k, v, t)


def tiny_gguf(path: Path) -> None:
    src = GGUFReader(FIX / "mixtral" / "model-f16.gguf")
    w = GGUFWriter(str(path), "llama")
    w.add_name("fuzz-seed")
    w.add_block_count(LAYERS)
    w.add_context_length(64)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(E)
    w.add_expert_used_count(K)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_vocab_size(VOCAB)
    w.add_rope_dimension_count(HD)
    w.add_file_type(1)
    add_fields(w, tokenizer_fields(src, VOCAB))
    w.add_tensor("token_embd.weight", rand(VOCAB, H))
    for l in range(LAYERS):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", rand(H, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(HEADS * HD, H))
        w.add_tensor(p + "attn_k.weight", rand(KV * HD, H))
        w.add_tensor(p + "attn_v.weight", rand(KV * HD, H))
        w.add_tensor(p + "attn_output.weight", rand(H, HEADS * HD))
        w.add_tensor(p + "ffn_norm.weight", rand(H, dtype=np.float32))
        w.add_tensor(p + "ffn_gate_inp.weight", rand(E, H, dtype=np.float32))
        w.add_tensor(p + "ffn_gate_exps.weight", rand(E, FFN, H))
        w.add_tensor(p + "ffn_up_exps.weight", rand(E, FFN, H))
        w.add_tensor(p + "ffn_down_exps.weight", rand(E, H, FFN))
    w.add_tensor("output_norm.weight", rand(H, dtype=np.float32))
    w.add_tensor("output.weight", rand(VOCAB, H))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_hf() -> tuple[bytes, bytes]:
    config = json.loads((FIX / "mixtral" / "hf" / "config.json").read_text())
    config.update(hidden_size=H, intermediate_size=FFN, num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HD,
                  num_local_experts=E, num_experts_per_tok=K, num_hidden_layers=LAYERS, vocab_size=VOCAB,
                  max_position_embeddings=64)
    t = {"model.embed_tokens.weight": rand(VOCAB, H), "model.norm.weight": rand(H), "lm_head.weight": rand(VOCAB, H)}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = rand(H)
        t[p + "post_attention_layernorm.weight"] = rand(H)
        t[p + "self_attn.q_proj.weight"] = rand(HEADS * HD, H)
        t[p + "self_attn.k_proj.weight"] = rand(KV * HD, H)
        t[p + "self_attn.v_proj.weight"] = rand(KV * HD, H)
        t[p + "self_attn.o_proj.weight"] = rand(H, HEADS * HD)
        t[p + "block_sparse_moe.gate.weight"] = rand(E, H)
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            t[q + "w1.weight"] = rand(FFN, H)
            t[q + "w2.weight"] = rand(H, FFN)
            t[q + "w3.weight"] = rand(FFN, H)
    return json.dumps(config, indent=2).encode(), st_save(t, metadata={"format": "pt"})


def trim_tokenizer_json(path: Path, n: int) -> bytes:
    j = json.loads(path.read_text())
    m = j.get("model", {})
    vocab = m.get("vocab")
    if isinstance(vocab, dict):
        m["vocab"] = {k: v for k, v in vocab.items() if v < n}
        kept = set(m["vocab"])
        merges = []
        for mg in m.get("merges", []):
            a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
            if a in kept and b in kept and a + b in kept:
                merges.append(mg)
        m["merges"] = merges
    elif isinstance(vocab, list):  # Unigram: [piece, score]
        m["vocab"] = vocab[:n]
    j["added_tokens"] = j.get("added_tokens", [])[:8]
    return json.dumps(j, ensure_ascii=False).encode()


def trim_spm(path: Path, n: int) -> bytes:
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString(path.read_bytes())
    keep = [p for i, p in enumerate(m.pieces) if i < n or p.type == pb.ModelProto.SentencePiece.BYTE]
    del m.pieces[:]
    m.pieces.extend(keep)
    return m.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", help="the moe binary: also make store, trace and calibration seeds")
    ap.add_argument("--dictionaries-only", action="store_true", help="only rewrite tools/fuzz/dictionaries/")
    args = ap.parse_args()
    if args.dictionaries_only:
        dictionaries()
        return
    work = Path(tempfile.mkdtemp())
    gguf_path = work / "tiny.gguf"
    tiny_gguf(gguf_path)
    write("gguf", "tiny-mixtral.gguf", gguf_path.read_bytes())

    config, st = tiny_hf()
    write("hf", "tiny-mixtral", config + MARKER + st)
    for fam in ["qwen3moe", "qwen2moe", "olmoe", "deepseek-v2", "deepseek-v3", "glm4moe", "gptoss"]:
        cfg = FIX / fam / "hf" / "config.json"
        if cfg.exists():
            write("hf", f"config-{fam}", cfg.read_bytes())

    for name in ["llama3", "qwen2", "olmoe", "deepseek-v3", "gpt-oss", "spm"]:
        d = FIX / "tokenizers" / name / "hf"
        if not (d / "tokenizer.json").exists():
            continue
        data = trim_tokenizer_json(d / "tokenizer.json", 300)
        if (d / "tokenizer_config.json").exists():
            cfg = json.loads((d / "tokenizer_config.json").read_text())
            cfg.pop("chat_template", None)
            cfg["added_tokens_decoder"] = dict(list(cfg.get("added_tokens_decoder", {}).items())[:8])
            data += MARKER + json.dumps(cfg).encode()
        write("tokenizer", name, data)
        g = FIX / "tokenizers" / name / "tokenizer.gguf"
        if g.exists():
            r = GGUFReader(g)
            w = GGUFWriter(str(work / f"{name}.gguf"), "llama")
            add_fields(w, tokenizer_fields(r, 300))
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.close()
            write("vocab", name + ".gguf", (work / f"{name}.gguf").read_bytes())
    for name in ["spm-only", "spm-only-legacy", "spm"]:
        d = FIX / "tokenizers" / name
        model = d / "tokenizer.model" if (d / "tokenizer.model").exists() else d / "hf" / "tokenizer.model"
        if model.exists():
            cfgp = model.parent / "tokenizer_config.json"
            data = trim_spm(model, 300)
            if cfgp.exists():
                cfg = json.loads(cfgp.read_text())
                cfg.pop("chat_template", None)
                data += MARKER + json.dumps(cfg).encode()
            write("spm", name, data)

    for t in sorted((FIX / "chat-templates").glob("*.jinja")):
        write("template", t.stem, t.read_bytes())

    plan = {"format": "swiftmoe-bit-plan", "version": 1, "default": "q4_K",
            "experts": [{"layer": 0, "expert": 1, "type": "q8_0"}, {"layer": 1, "expert": 0, "type": "keep"}]}
    write("bitplan", "plan.json", json.dumps(plan, indent=2).encode())

    if args.moe:
        moe = str(Path(args.moe).resolve())
        text = work / "text.txt"
        text.write_text("The quick brown fox jumps over the lazy dog. " * 8)
        def run(*a):
            subprocess.run([moe, *a], check=True, cwd=work, stdout=subprocess.DEVNULL)
        run("convert", str(gguf_path), "-o", str(work / "tiny.moe"))
        write("store", "tiny-mixtral.moe", (work / "tiny.moe").read_bytes())
        run("trace", "record", str(gguf_path), "--prompt", "Hello there", "--max-tokens", "4", "-o", str(work / "t.moetrace"))
        write("trace", "tiny.moetrace", (work / "t.moetrace").read_bytes())
        run("trace", "export", str(work / "t.moetrace"), "-o", str(work / "t.jsonl"))
        write("trace", "tiny.jsonl", (work / "t.jsonl").read_bytes())
        run("calibrate", str(gguf_path), "--text", str(text), "-o", str(work / "c.json"))
        write("calibration", "tiny.calibration.json", (work / "c.json").read_bytes())
    shutil.rmtree(work)
    dictionaries()


def esc(b: bytes) -> str:
    return "".join(chr(c) if 0x20 <= c < 0x7F and c not in (0x22, 0x5C) else f"\\x{c:02x}" for c in b)


def write_dict(name: str, entries) -> None:
    d = ROOT / "tools" / "fuzz" / "dictionaries"
    d.mkdir(parents=True, exist_ok=True)
    lines = sorted({f'"{esc(e if isinstance(e, bytes) else e.encode())}"' for e in entries if e})
    (d / f"{name}.dict").write_text("# libFuzzer dictionary, written by tools/make_fuzz_seeds.py\n" + "\n".join(lines) + "\n")


def dictionaries() -> None:
    """libFuzzer dictionaries: GGUF keys (bare and length-prefixed), JSON keys of configs,
    manifests, tokenizers, plans and calibrations, Jinja keywords."""
    import glob, struct
    keys = set()
    for g in glob.glob(str(FIX / "*" / "*.gguf")) + glob.glob(str(FIX / "tokenizers" / "*" / "*.gguf")):
        try:
            keys |= {k for k in GGUFReader(g).fields if not k.startswith("GGUF.")}
        except Exception:
            pass
    gguf = [b"GGUF", struct.pack("<I", 3), struct.pack("<I", 2)]
    gguf += [k.encode() for k in keys] + [struct.pack("<Q", len(k)) + k.encode() for k in keys]
    gguf += [struct.pack("<I", t) for t in range(13)] + [struct.pack("<Q", 1 << 62), struct.pack("<Q", 0xFFFFFFFFFFFFFFFF)]
    write_dict("gguf", gguf)
    write_dict("vocab", gguf)
    def json_keys(paths):
        out = set()
        for p in paths:
            try: out |= json_keys_from(Path(p).read_bytes().split(MARKER)[0], strings=True)
            except Exception: pass
        return out
    common = ['{', '}', '[', ']', ':', ',', 'null', 'true', 'false', '-1', '0', '1e308', '-0.0', '9223372036854775807',
              '18446744073709551615', '"\\u0000"', '"\\ud800"']
    hf = json_keys(glob.glob(str(FIX / "*" / "hf" / "config.json")))
    write_dict("hf", common + sorted(hf) + ["F16", "F32", "BF16", "I64", "U8", '"dtype":', '"shape":', '"data_offsets":', '"__metadata__":',
                                             MARKER.decode()])
    write_dict("tokenizer", common + sorted(json_keys(glob.glob(str(OUT / "tokenizer" / "*")))) + [MARKER.decode()])
    write_dict("spm", [MARKER.decode(), "<unk>", "<s>", "</s>", "<0x0A>", "\u2581"] + common)
    manifest = set()
    for p in glob.glob(str(OUT / "store" / "*.moe")):
        b = Path(p).read_bytes()
        off, n = struct.unpack_from("<QQ", b, 16)
        try: manifest |= json_keys_from(b[off:off + n])
        except Exception: pass
    write_dict("store", common + sorted(manifest) + ["MOESTORE", "lz4", "none"])
    write_dict("trace", common + sorted(json_keys(glob.glob(str(OUT / "trace" / "*.jsonl")))) + ["MOETRACE"])
    write_dict("bitplan", common + ['"swiftmoe-bit-plan"', '"format":', '"version":', '"default":', '"experts":', '"layer":',
                                    '"expert":', '"type":', '"keep"', '"q4_K"', '"q8_0"', '"q2_K"', '"iq4_xs"', '"f16"'])
    write_dict("calibration", common + sorted(json_keys(glob.glob(str(OUT / "calibration" / "*")))))
    jinja = ["{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "if", "elif", "else", "endif", "for", "endfor", "in",
             "set", "endset", "macro", "endmacro", "call", "endcall", "filter", "endfilter", "raw", "endraw", "break", "continue",
             "not", "and", "or", "is", "loop.index", "loop.first", "loop.last", "namespace(", "range(", "messages", "message",
             "['content']", "['role']", "|tojson", "|trim", "|length", "|join", "|map", "|selectattr", "|default", "|safe",
             "raise_exception(", "strftime_now(", "add_generation_prompt", "bos_token", "eos_token", "tools", ".split(", ".strip(",
             "~", "**", "//", "[::-1]", "none", "None", "defined", "string", "mapping", "iterable"]
    write_dict("template", jinja)


def json_keys_from(data: bytes, strings: bool = False):
    """Dictionary entries from one JSON document: every key as `"key":`, and with `strings`
    every short string value as `"value"` (lists: their first 50 items)."""
    out = set()
    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                out.add(f'"{k}":'); walk(x)
        elif isinstance(v, list):
            for x in v[:50]: walk(x)
        elif strings and isinstance(v, str) and len(v) < 40:
            out.add(f'"{v}"')
    walk(json.loads(data))
    return out


if __name__ == "__main__":
    main()
