#!/usr/bin/env python3
"""Write the demo model's routing on held-out and calibration text as small fixtures.

Usage:
    python3 tools/make_routing_fixture.py [--moe .build/release/moe] [--tokens 512]

Runs `moe trace` on Models/demo/demo.moe for Models/demo/validation.txt (held out from
training) and Models/demo/calibration.txt, exports each trace as JSONL and writes
Tests/Fixtures/routing/demo-<text>.txt: one line per decoded token, the experts each MoE layer
chose for it (layer 0's top-k first), space-separated. The first line is a header
`# layers L experts E top-k K`. These are the model's decisions (inputs for cache-policy tests:
the tests compare policies with Belady's MIN on them), not expected outputs of the code tested.
"""
import argparse
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", default=os.path.join(ROOT, ".build/release/moe"))
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()
    demo = os.path.join(ROOT, "Models/demo/demo.moe")
    out_dir = os.path.join(ROOT, "Tests/Fixtures/routing")
    os.makedirs(out_dir, exist_ok=True)
    for name in ("validation", "calibration"):
        with tempfile.TemporaryDirectory() as tmp:
            trace, jsonl = os.path.join(tmp, "t.trace"), os.path.join(tmp, "t.jsonl")
            subprocess.run([args.moe, "trace", demo, "--text", os.path.join(ROOT, f"Models/demo/{name}.txt"),
                            "--tokens", str(args.tokens), "-o", trace], check=True, capture_output=True)
            subprocess.run([args.moe, "trace", "export", trace, "-o", jsonl], check=True, capture_output=True)
            header, rows = None, {}
            with open(jsonl) as f:
                for line in f:
                    o = json.loads(line)
                    if o.get("type") == "header":
                        header = o["header"]
                    elif o.get("type") == "layer":
                        for route in o["routes"]:
                            rows.setdefault(o["step"], []).append(route["experts"])
        path = os.path.join(out_dir, f"demo-{name}.txt")
        with open(path, "w") as f:
            f.write(f"# layers {header['layerCount']} experts {header['expertCount']} top-k {header['expertsPerToken']}\n")
            for step in sorted(rows):
                f.write(" ".join(str(e) for layer in rows[step] for e in layer) + "\n")
        print("wrote", path, len(rows), "tokens")


if __name__ == "__main__":
    main()
