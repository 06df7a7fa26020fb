#!/usr/bin/env python3
"""Train a second small MoE, different from the demo, for checks that must not rest on one model.

The proxy validation (Benchmarks/proxy_validation.py) compares proxy sensitivities with measured
ones on the demo *and* on a second trained model. This script reuses tools/train_demo.py's
corpus, tokenizer, training loop and determinism, with another seed and shape, and exports only
the HF directory (f32 safetensors + tokenizer), which every `moe` command reads directly. It
never touches Models/demo.

    | | demo | second model |
    |---|---|---|
    | layers × experts, top-k | 4 × 16, top-2 | 4 × 8, top-2 |
    | hidden / expert FFN | 256 / 256 | 256 / 256 (K-quant rows) |
    | heads | 4 q, 2 kv | 4 q, 2 kv |
    | sequence × batch × steps | 512 × 8 × 1200 | 256 × 8 × 150 (0.3M tokens) |
    | seed | 1234 | 4321 |

Usage (reuses WORK/corpus, WORK/tokenizer and WORK/tokens-train.npy of a demo work directory,
which `python3 tools/train_demo.py tokenizer --work DEMO_WORK` makes in about a minute)::

    python3 tools/train_second_model.py --demo-work .build-demo --work .build-second

writes WORK/hf. About 5 minutes on an idle core (46 on the loaded machine it was first trained on; final quick validation loss 5.94, the demo reaches 3.3).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_demo as td  # noqa: E402

td.MODEL_CONFIG.update(num_experts=8, num_experts_per_tok=2)
td.TRAIN.update(seed=4321, seq_len=256, batch_size=8, steps=150, warmup=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-work", type=Path, required=True, help="train_demo.py work directory with corpus/ and tokenizer/")
    ap.add_argument("--work", type=Path, required=True, help="scratch directory outside git")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for name in ("corpus", "tokenizer", "tokens-train.npy"):
        link = args.work / name
        if not link.exists():
            os.symlink((args.demo_work / name).resolve(), link)
    ns = argparse.Namespace(work=args.work, threads=args.threads, log_every=10, eval_every=50, ckpt_every=50)
    td.stage_train(ns)
    hf = args.work / "hf"
    shutil.rmtree(hf, ignore_errors=True)
    shutil.copytree(args.work / "final", hf)
    for f in (args.work / "tokenizer").iterdir():
        shutil.copyfile(f, hf / f.name)
    td.log(f"wrote {hf}")


if __name__ == "__main__":
    main()
