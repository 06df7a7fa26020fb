#!/usr/bin/env python3
"""Write a Qwen3-MoE ``.moe`` store (uncompressed records) back out as a GGUF file.

Why: the demo model's committed form is ``Models/demo/demo.moe`` (Q8_0). llama.cpp's tools
(``llama-imatrix``, ``llama-quantize --imatrix``) need a GGUF, and ``moe convert`` needs a GGUF or
Hugging Face source; this recreates the Q8_0 GGUF the store was converted from, tensor bytes
unchanged (dense tensors as stored, each layer's experts stacked into ``ffn_*_exps`` tensors),
without retraining the model. Reads the store as docs/store-format.md describes; uses the
``gguf`` package to write.

Usage::

    python3 tools/store_to_gguf.py Models/demo/demo.moe .build-demo/demo-q8_0.gguf
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

TYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
         "q2_K": gguf.GGMLQuantizationType.Q2_K, "q3_K": gguf.GGMLQuantizationType.Q3_K, "q4_K": gguf.GGMLQuantizationType.Q4_K,
         "q5_K": gguf.GGMLQuantizationType.Q5_K, "q6_K": gguf.GGMLQuantizationType.Q6_K}


def main(store: Path, out: Path) -> None:
    data = np.memmap(store, dtype=np.uint8, mode="r")
    if bytes(data[:8]) != b"MOESTORE":
        sys.exit(f"{store}: not a .moe store")
    offset, length = struct.unpack("<QQ", bytes(data[16:32]))
    m = json.loads(bytes(data[offset:offset + length]))
    c = m["configuration"]
    if c["architecture"] != "qwen3moe":
        sys.exit("only qwen3moe stores are supported")
    arch = "qwen3moe"
    w = gguf.GGUFWriter(str(out), arch)
    w.add_name("SwiftMoE demo")
    w.add_block_count(c["layerCount"])
    w.add_context_length(c["contextLength"])
    w.add_embedding_length(c["hiddenSize"])
    w.add_feed_forward_length(c["expertFFNSize"])
    w.add_head_count(c["headCount"])
    w.add_head_count_kv(c["kvHeadCount"])
    w.add_rope_freq_base(float(c["ropeTheta"]))
    w.add_layer_norm_rms_eps(float(c["rmsNormEpsilon"]))
    w.add_expert_count(c["expertCount"])
    w.add_expert_used_count(c["expertsPerToken"])
    w.add_key_length(c["headDim"])
    w.add_value_length(c["headDim"])
    w.add_expert_feed_forward_length(c["expertFFNSize"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    # Tokenizer: the store's blob is a metadata-only GGUF of the source's tokenizer.* keys.
    t = m["tokenizer"]
    blob = out.with_suffix(".tokenizer.gguf")
    blob.write_bytes(bytes(data[t["offset"]:t["offset"] + t["length"]]))
    r = gguf.GGUFReader(str(blob))
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(key, field.contents())
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_string(key, field.contents())
        elif vtype == gguf.GGUFValueType.BOOL:
            w.add_bool(key, field.contents())
        else:
            w.add_uint32(key, int(field.contents()))
    blob.unlink()

    for d in m["dense"]:
        qt = TYPES[d["type"]]
        arr = np.asarray(data[d["offset"]:d["offset"] + d["length"]])
        if qt == gguf.GGMLQuantizationType.F32:
            w.add_tensor(d["name"], arr.view(np.float32).reshape(list(reversed(d["shape"]))))
        else:
            w.add_tensor(d["name"], arr, raw_shape=gguf.quant_shape_to_byte_shape(list(reversed(d["shape"])), qt), raw_dtype=qt)
    experts = sorted(m["experts"], key=lambda e: (e["layer"], e["expert"]))
    for layer in range(c["layerCount"]):
        recs = [e for e in experts if e["layer"] == layer]
        if not recs:
            continue
        for i, part in enumerate(("gate", "up", "down")):
            ts = [r["tensors"][i] for r in recs]
            assert all(r["compression"] == "none" for r in recs), "compressed records are not supported"
            typ = ts[0]["type"]
            assert all(x["type"] == typ for x in ts)
            qt = TYPES[typ]
            shape = [len(recs)] + list(reversed(ts[0]["shape"]))
            arr = np.concatenate([np.asarray(data[r["offset"] + x["offset"]:r["offset"] + x["offset"] + x["length"]]) for r, x in zip(recs, ts)])
            name = f"blk.{layer}.ffn_{part}_exps.weight"
            if qt == gguf.GGMLQuantizationType.F32:
                w.add_tensor(name, arr.view(np.float32).reshape(shape))
            else:
                w.add_tensor(name, arr, raw_shape=gguf.quant_shape_to_byte_shape(shape, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
