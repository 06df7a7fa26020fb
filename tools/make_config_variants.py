#!/usr/bin/env python3
"""Write the model fixtures' config.json in transformers 5.x's spelling, and record the values
transformers' config classes give keys a config.json leaves out.

For every fixture case with a Hugging Face directory (Tests/Fixtures/<case>/hf, written by
make_fixtures.py with transformers 4.57) this script

  * loads the directory's config.json with transformers 5.x (``AutoConfig.from_pretrained``) and
    saves it again (``save_pretrained``): ``Tests/Fixtures/<case>/config-v5.json`` is the same
    model in the 5.x spelling (``rope_parameters`` instead of ``rope_theta``,
    ``num_local_experts`` for Qwen3-MoE, ``layer_types`` for Qwen2-MoE, …). The Swift tests put
    it in place of config.json, next to the same weights, and expect transformers' reference
    logits (tests: Tests/ExecutorTests/ConfigVariantTests.swift);
  * for each family, builds a config.json with only the keys SwiftMoE requires (sizes a tensor
    shape checks) and records, with transformers 4.57 and with 5.x, what the config class and the
    modeling code make of every other setting (top-k, rope theta, epsilon, sliding window, …).
    ``Tests/Fixtures/config-defaults.json`` holds both; the Swift tests read that config and
    compare the configuration they get with transformers' values.

Only the configuration modules are used (no torch, no weights). transformers 4.57 and 5.x
cannot share one environment, so the script runs itself once under each interpreter:

    python3 -m venv /tmp/venv-tf5
    /tmp/venv-tf5/bin/pip install transformers==5.24.0      # no torch needed
    python3 tools/make_config_variants.py --tf5-python /tmp/venv-tf5/bin/python
    # python3 (the one running the script) must have transformers 4.57.x, as make_fixtures.py uses

Deterministic: a rerun with the same versions rewrites byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures"
CASES = ["mixtral", "qwen2moe", "qwen3moe", "olmoe", "qwen2moe-sparse-step", "qwen3moe-dense"]

# The keys SwiftMoE requires (their values are checked by tensor shapes), per model_type.
REQUIRED = {
    "mixtral": {"vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 32},
    "qwen2_moe": {"vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
                  "intermediate_size": 96, "moe_intermediate_size": 32},
    "qwen3_moe": {"vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
                  "intermediate_size": 96, "moe_intermediate_size": 32},
    "olmoe": {"vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 32},
}
# Minimal configs whose missing keys transformers resolves: name -> (model_type, extra keys).
# Qwen2-MoE's sliding window is where 4.57 and 5.x differ (which layers slide).
MINIMAL = {mt: (mt, {}) for mt in REQUIRED}
MINIMAL["qwen2_moe-sliding-1-layer"] = ("qwen2_moe", {"use_sliding_window": True, "num_hidden_layers": 1})
MINIMAL["qwen2_moe-sliding-2-layers"] = ("qwen2_moe", {"use_sliding_window": True})
MINIMAL["qwen3_moe-sliding"] = ("qwen3_moe", {"use_sliding_window": True})


def resolve(model_type: str, c) -> dict:
    """What transformers' modeling code uses for each setting, named as `moe inspect` names them."""
    rope = getattr(c, "rope_parameters", None)  # 5.x
    if rope:
        theta, rope_type = rope["rope_theta"], rope["rope_type"]
    else:  # 4.57: rope_theta, with the type in rope_scaling
        scaling = getattr(c, "rope_scaling", None) or {}
        theta, rope_type = c.rope_theta, scaling.get("rope_type", scaling.get("type", "default"))
    experts = c.num_local_experts if model_type == "mixtral" else c.num_experts
    out = {
        "experts": experts,
        "top-k": c.num_experts_per_tok,
        "kv heads": c.num_key_value_heads,
        "head dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        "rope type": rope_type,
        "rope theta": theta,
        "rms eps": c.rms_norm_eps,
        "context": c.max_position_embeddings,
        "activation": c.hidden_act,
        "tied embeddings": c.tie_word_embeddings,
        # MixtralTopKRouter always renormalises; the others read norm_topk_prob.
        "top-k renormalised": True if model_type == "mixtral" else c.norm_topk_prob,
    }
    if model_type == "qwen2_moe":
        # 5.x: a window on the layers layer_types marks sliding; 4.57 (eager/SDPA): on every layer.
        types = getattr(c, "layer_types", None)
        window = c.sliding_window if c.use_sliding_window else None
        if types is not None:
            windows = {window if t == "sliding_attention" else None for t in types}
            window = windows.pop() if len(windows) == 1 else "mixed"
        out.update({"sliding window": window, "qkv bias": c.qkv_bias,
                    "shared expert ffn": c.shared_expert_intermediate_size})
    elif model_type in ("mixtral", "qwen3_moe"):
        out["sliding window"] = getattr(c, "sliding_window", None)
    else:
        out["sliding window"] = None  # OLMoE has no sliding window
    if model_type in ("qwen2_moe", "qwen3_moe"):
        out.update({"sparse step": c.decoder_sparse_step, "mlp-only layers": list(c.mlp_only_layers)})
    if model_type in ("qwen3_moe", "olmoe"):
        out["attention bias"] = c.attention_bias
    if model_type == "olmoe":
        out["clip qkv"] = c.clip_qkv
    return out


def child(out_dir: Path) -> None:
    """Runs under one transformers version: re-saves the fixtures' configs (5.x) and resolves
    the minimal configs; prints JSON."""
    import transformers
    from transformers import AutoConfig

    version = transformers.__version__
    result = {"version": version, "resaved": {}, "resolved": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if version.startswith("5."):
            for case in CASES:
                src = FIXTURES / case / "hf"
                if not (src / "config.json").exists():
                    continue
                dst = Path(tmp) / case
                AutoConfig.from_pretrained(src).save_pretrained(dst)
                result["resaved"][case] = json.loads((dst / "config.json").read_text())
        for name, (model_type, extra) in MINIMAL.items():
            d = Path(tmp) / f"min-{name}"
            d.mkdir()
            (d / "config.json").write_text(json.dumps({"model_type": model_type, **REQUIRED[model_type], **extra}))
            result["resolved"][name] = resolve(model_type, AutoConfig.from_pretrained(d))
    print(json.dumps(result))


def run(python: str) -> dict:
    proc = subprocess.run([python, __file__, "--_child"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf5-python", default="/tmp/venv-tf5/bin/python", help="an interpreter with transformers 5.x")
    ap.add_argument("--tf4-python", default=sys.executable, help="an interpreter with transformers 4.57.x")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return child(FIXTURES)

    new, old = run(args.tf5_python), run(args.tf4_python)
    assert new["version"].startswith("5."), f"--tf5-python has transformers {new['version']}"
    assert old["version"].startswith("4."), f"--tf4-python has transformers {old['version']}"
    for case, config in new["resaved"].items():
        path = FIXTURES / case / "config-v5.json"
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    classes = {"mixtral": "MixtralConfig", "qwen2_moe": "Qwen2MoeConfig", "qwen3_moe": "Qwen3MoeConfig", "olmoe": "OlmoeConfig"}
    defaults = {
        "about": "config.json with only the keys SwiftMoE requires, and the value transformers gives every other "
                 "setting, per release (tools/make_config_variants.py)",
        "configs": {
            name: {"class": classes[mt], "config": {"model_type": mt, **REQUIRED[mt], **extra},
                   "resolved": {old["version"]: old["resolved"][name], new["version"]: new["resolved"][name]}}
            for name, (mt, extra) in MINIMAL.items()
        },
    }
    path = FIXTURES / "config-defaults.json"
    path.write_text(json.dumps(defaults, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    for name, (mt, _) in MINIMAL.items():
        a, b = old["resolved"][name], new["resolved"][name]
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                print(f"note: {name} {key}: {old['version']} gives {a.get(key)!r}, {new['version']} {b.get(key)!r}")


if __name__ == "__main__":
    main()
