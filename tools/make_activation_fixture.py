#!/usr/bin/env python3
"""Per-expert activation statistics of the tiny Qwen3-MoE fixture, from transformers.

What ``moe calibrate``'s routing pass gathers (Sources/Quality/ActivationStatistics.swift),
computed independently: transformers runs Tests/Fixtures/qwen3moe/hf on the first tokens of
Tests/Fixtures/perplexity/reference.json, cut into windows (each from an empty context), and
hooks on every expert record, per expert, the tokens routed to it, Σ x² per input column (the
imatrix llama.cpp keeps), Σ h² per column of the down projection's input h = silu(gate x)·up x,
Σ silu(gate x)², Σ (silu'(gate x)·up x)² and Σ router weight². Writes
Tests/Fixtures/activations/qwen3moe.json (read by Tests/QualityTests/ActivationStatisticsTests.swift).

Usage: python3 tools/make_activation_fixture.py
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "Tests/Fixtures/qwen3moe/hf"
OUT = REPO / "Tests/Fixtures/activations/qwen3moe.json"
TOKENS = 144
WINDOW = 48


def main() -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    model.eval()
    cfg = model.config
    tokens = json.loads((REPO / "Tests/Fixtures/perplexity/reference.json").read_text())["tokens"][:TOKENS]
    L, E, H, F = cfg.num_hidden_layers, cfg.num_experts, cfg.hidden_size, cfg.moe_intermediate_size
    uses = [[0] * E for _ in range(L)]
    rw2 = [[0.0] * E for _ in range(L)]
    x2 = torch.zeros(L, E, H, dtype=torch.float64)
    h2 = torch.zeros(L, E, F, dtype=torch.float64)
    a2 = torch.zeros(L, E, F, dtype=torch.float64)
    b2 = torch.zeros(L, E, F, dtype=torch.float64)
    hooks = []
    for l, layer in enumerate(model.model.layers):
        moe = layer.mlp
        def gate_hook(module, inputs, output, l=l, moe=moe):
            logits = output[0] if isinstance(output, tuple) else output
            probs = torch.softmax(logits.float(), dim=-1)
            w, idx = torch.topk(probs, cfg.num_experts_per_tok, dim=-1)
            if cfg.norm_topk_prob:
                w = w / w.sum(dim=-1, keepdim=True)
            for t in range(idx.shape[0]):
                for k in range(idx.shape[1]):
                    rw2[l][int(idx[t, k])] += float(w[t, k]) ** 2
        hooks.append(moe.gate.register_forward_hook(gate_hook))
        for e, expert in enumerate(moe.experts):
            def pre(module, args, l=l, e=e):
                x = args[0].double()
                uses[l][e] += x.shape[0]
                x2[l, e] += (x * x).sum(0)
                g = module.gate_proj(args[0]).double()
                u = module.up_proj(args[0]).double()
                s = torch.sigmoid(g)
                silu = g * s
                h = silu * u
                h2[l, e] += (h * h).sum(0)
                a2[l, e] += (silu * silu).sum(0)
                d = s * (1 + g * (1 - s)) * u
                b2[l, e] += (d * d).sum(0)
            hooks.append(expert.register_forward_pre_hook(pre))
    with torch.no_grad():
        for s in range(0, len(tokens), WINDOW):
            model(input_ids=torch.tensor([tokens[s:s + WINDOW]]))
    for h in hooks:
        h.remove()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    r = lambda t: [[[float(f"{v:.7g}") for v in row] for row in layer] for layer in t.tolist()]
    OUT.write_text(json.dumps({
        "model": "qwen3moe/hf", "tokens": TOKENS, "window": WINDOW, "transformers": __import__("transformers").__version__,
        "uses": uses, "routerWeightSquares": rw2, "inputSquares": r(x2), "hiddenSquares": r(h2), "upGain": r(a2), "gateGain": r(b2),
    }) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
