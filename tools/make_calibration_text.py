#!/usr/bin/env python3
"""Writes Models/demo/calibration.txt: the demo model's calibration text for `moe calibrate`.

A deterministic subset of the demo's *training* documents (never the held-out ones that
validation.txt comes from, so quality measured on validation.txt is not measured on the text
the bit planner was tuned on): whole documents in hash order, alternating prose and code by
bytes so far, up to MAX_BYTES. Reads the corpus `tools/train_demo.py corpus` writes.

    python3 tools/make_calibration_text.py --work /work/demo-build
"""
import argparse
import hashlib
import json
from pathlib import Path

MAX_BYTES = 64_000
DOC_SEPARATOR = "<|endoftext|>"
ROOT = Path(__file__).resolve().parent.parent


def stable_hash(s: str) -> int:
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="train_demo.py's work directory (holds corpus/train.jsonl)")
    ap.add_argument("--out", type=Path, default=ROOT / "Models/demo/calibration.txt")
    args = ap.parse_args()
    with open(args.work / "corpus" / "train.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    queues = {k: sorted([d for d in docs if d["kind"] == k and len(d["text"].encode()) < MAX_BYTES // 4],
                        key=lambda d: stable_hash("calibration:" + d["name"])) for k in ("prose", "code")}
    chosen, size, kind_bytes = [], 0, {"prose": 0, "code": 0}
    while any(queues.values()):
        kind = min((k for k in queues if queues[k]), key=lambda k: (kind_bytes[k], k))
        d = queues[kind].pop(0)
        n = len(d["text"].encode()) + len(DOC_SEPARATOR)
        if size + n > MAX_BYTES:
            if size > MAX_BYTES * 0.95:
                break
            continue
        chosen.append(d)
        size += n
        kind_bytes[kind] += n
    args.out.write_text(DOC_SEPARATOR.join(d["text"] for d in chosen), encoding="utf-8")
    print(f"wrote {args.out}: {len(chosen)} documents, {size} bytes ({kind_bytes})")
    for d in chosen:
        print("  " + d["name"])


if __name__ == "__main__":
    main()
