#!/usr/bin/env python3
"""Record llama.cpp's logits for every GGUF fixture, to calibrate our fast path.

llama.cpp (through the PyPI package llama-cpp-python, which builds its CPU backend from
source) computes block-quantized weights with 8-bit activations, like our `fast` kernels.
How far its logits land from transformers' on the same weights is the yardstick for ours:
Tests/ExecutorTests/FastPathTests.swift requires our deviation to be within a small factor
of llama.cpp's.

Usage:  python3 tools/make_llamacpp_logits.py [--fixtures Tests/Fixtures]
Writes: Tests/Fixtures/<case>/ref/llamacpp-<dtype>-seq<i>.npy and
        Tests/Fixtures/<case>/llamacpp.json  {"version", "threads", "files": {model: [npy...]}}
Requires: llama-cpp-python==0.3.36, numpy (see tools/requirements-fixtures.txt).
"""
import argparse
import json
import os

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    for case in sorted(os.listdir(args.fixtures)):
        manifest_path = os.path.join(args.fixtures, case, "manifest.json")
        if not os.path.isfile(manifest_path):
            continue
        manifest = json.load(open(manifest_path))
        if "models" not in manifest:
            continue
        record = {"version": llama_cpp.__version__, "threads": args.threads, "files": {}}
        for entry in manifest["models"]:
            if entry["format"] != "gguf":
                continue
            path = os.path.join(args.fixtures, case, entry["path"])
            outputs = []
            try:
                Llama(model_path=path, n_ctx=64, verbose=False)
            except ValueError as e:
                # e.g. llama.cpp's deepseek2 requires q_lora_rank unless the layer count is V2-Lite's
                record.setdefault("unloadable", {})[entry["path"]] = str(e).replace(os.path.abspath(args.fixtures), "Tests/Fixtures")
                print(f"{case}/{entry['path']}: llama.cpp refuses it ({e})")
                continue
            for i, tokens in enumerate(manifest["sequences"]):
                llm = Llama(model_path=path, n_ctx=max(64, len(tokens) + 8), n_batch=64, logits_all=True,
                            n_threads=args.threads, n_threads_batch=args.threads, verbose=False, seed=0)
                llm.eval(tokens)
                logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
                name = f"ref/llamacpp-{entry['dtype']}-seq{i}.npy"
                np.save(os.path.join(args.fixtures, case, name), logits)
                outputs.append(name)
                del llm
            record["files"][entry["path"]] = outputs
            print(f"{case}/{entry['path']}: {len(outputs)} sequences")
        if record["files"] or record.get("unloadable"):
            with open(os.path.join(args.fixtures, case, "llamacpp.json"), "w") as f:
                json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
