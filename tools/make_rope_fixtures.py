#!/usr/bin/env python3
"""RoPE scaling fixtures (linear, YaRN, llama3) computed by transformers.

Writes Tests/Fixtures/rope/:
  * frequencies.json: for a set of rope configurations, transformers' own
    ``ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")`` result (inverse frequencies,
    attention factor) and the full config.json they were computed from; the Swift
    tests read each config through the family reader and compare ``Rope``.
  * <variant>/config.json + <variant>-seq*.npy: the committed tiny models of
    Tests/Fixtures/<family>/hf re-run by transformers (float32, eager attention) with
    a scaled-RoPE config (the weights are the fixture's own; the test copies the HF
    directory and swaps config.json in).
  * qwen3moe-yarn.gguf: the YaRN variant converted by llama.cpp's converter (F32),
    whose rope.scaling.* keys the GGUF reader must honour. llama.cpp always rounds the
    YaRN correction range, so that variant keeps transformers' default truncate=true.

Usage: python3 tools/make_rope_fixtures.py [--converter PATH]
(same converter as tools/make_fixtures.py, run through its --_convert-wrapper).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "Tests" / "Fixtures"
OUT = FIX / "rope"
DEFAULT_CONVERTER = "/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py"

# (name, family fixture, rope fields to set in config.json)
FREQUENCY_CASES = [
    ("yarn-gptoss", "qwen3moe", {"rope_theta": 150000.0, "head_dim": 64, "max_position_embeddings": 131072,
                                 "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                                  "original_max_position_embeddings": 4096, "truncate": False}}),
    ("yarn-qwen3-long", "qwen3moe", {"rope_theta": 1000000.0, "head_dim": 128, "max_position_embeddings": 131072,
                                     "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}),
    ("yarn-deepseek-mscale", "qwen3moe", {"rope_theta": 10000.0, "head_dim": 64, "max_position_embeddings": 163840,
                                          "rope_scaling": {"type": "yarn", "factor": 40.0, "beta_fast": 32, "beta_slow": 1,
                                                           "mscale": 1.0, "mscale_all_dim": 0.707,
                                                           "original_max_position_embeddings": 4096}}),
    ("yarn-attention-factor-no-original", "qwen3moe", {"rope_theta": 10000.0, "head_dim": 24, "max_position_embeddings": 2048,
                                                       "rope_scaling": {"rope_type": "yarn", "factor": 2.5, "attention_factor": 0.9,
                                                                        "beta_fast": 0, "beta_slow": None}}),
    ("linear", "mixtral", {"rope_theta": 1000000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}),
    ("llama3", "qwen2moe", {"rope_theta": 500000.0, "max_position_embeddings": 131072,
                            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 8192}}),
]

# Logit variants: small original contexts so the scaling changes every sequence's logits.
LOGIT_VARIANTS = [
    ("qwen3moe-yarn", "qwen3moe", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 8.0, "beta_slow": 1.0,
                                                    "original_max_position_embeddings": 64}}),
    ("qwen3moe-yarn-untruncated", "qwen3moe", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 8.0, "beta_slow": 1.0,
                                                                "original_max_position_embeddings": 64, "truncate": False,
                                                                "attention_factor": 1.25}}),
    ("mixtral-linear", "mixtral", {"rope_scaling": {"type": "linear", "factor": 3.0}}),
    ("qwen2moe-llama3", "qwen2moe", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
]


def family_config(family: str, fields: dict) -> dict:
    cfg = json.loads((FIX / family / "hf" / "config.json").read_text())
    cfg.update(fields)
    return cfg


def frequencies() -> list:
    out = []
    for name, family, fields in FREQUENCY_CASES:
        cfg_dict = family_config(family, fields)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "config.json").write_text(json.dumps(cfg_dict))
            cfg = AutoConfig.from_pretrained(d)
        rope_type = (cfg.rope_scaling or {}).get("rope_type", (cfg.rope_scaling or {}).get("type"))
        inv, attn = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu")
        entry = {"name": name, "family": family, "config": cfg_dict,
                 "inverse_frequencies": [float(x) for x in inv.tolist()], "attention_factor": float(attn)}
        if "mscale_all_dim" in cfg.rope_scaling:
            # DeepseekV3Attention: scaling *= yarn_get_mscale(factor, mscale_all_dim) ** 2
            from transformers.models.deepseek_v3.modeling_deepseek_v3 import yarn_get_mscale
            m = yarn_get_mscale(cfg.rope_scaling["factor"], cfg.rope_scaling["mscale_all_dim"])
            entry["softmax_scale_multiplier"] = float(m * m)
        out.append(entry)
    return out


def logits(converter: str) -> dict:
    manifest = json.loads((FIX / "qwen3moe" / "manifest.json").read_text())
    sequences = manifest["sequences"][1:]  # 7 and 40 tokens
    variants = {}
    for name, family, fields in LOGIT_VARIANTS:
        cfg_dict = family_config(family, fields)
        (OUT / name).mkdir(parents=True, exist_ok=True)
        (OUT / name / "config.json").write_text(json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")
        with tempfile.TemporaryDirectory() as d:
            for f in (FIX / family / "hf").iterdir():
                shutil.copy(f, d)
            Path(d, "config.json").write_text(json.dumps(cfg_dict))
            model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").eval()
            files = []
            for s, seq in enumerate(sequences):
                with torch.no_grad():
                    out = model(torch.tensor([seq])).logits[0].float().numpy()
                path = f"{name}-seq{s}.npy"
                np.save(OUT / path, out.astype(np.float32))
                files.append(path)
            # How much the scaling moves the logits (so the test is not vacuous).
            plain = AutoModelForCausalLM.from_pretrained(FIX / family / "hf", torch_dtype=torch.float32, attn_implementation="eager").eval()
            with torch.no_grad():
                moved = float((plain(torch.tensor([sequences[-1]])).logits[0] - model(torch.tensor([sequences[-1]])).logits[0]).abs().max())
            if name == "qwen3moe-yarn":
                gguf = OUT / "qwen3moe-yarn.gguf"
                env = dict(os.environ)
                env["PYTHONPATH"] = str(Path(converter).parent / "gguf-py") + os.pathsep + env.get("PYTHONPATH", "")
                subprocess.run([sys.executable, str(REPO / "tools" / "make_fixtures.py"), "--_convert-wrapper", "qwen2", converter,
                                d, "--outfile", str(gguf), "--outtype", "f32"], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        variants[name] = {"family": family, "logits": files, "moved_by_scaling": moved}
    return {"sequences": sequences, "variants": variants, "gguf": {"qwen3moe-yarn.gguf": "qwen3moe-yarn"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--converter", default=os.environ.get("LLAMA_CPP_CONVERTER", DEFAULT_CONVERTER))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"transformers": transformers.__version__, "frequencies": frequencies()}
    result.update(logits(args.converter))
    (OUT / "rope.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v["moved_by_scaling"] for k, v in result["variants"].items()}))


if __name__ == "__main__":
    main()
