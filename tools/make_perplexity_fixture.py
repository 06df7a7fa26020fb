#!/usr/bin/env python3
"""Reference perplexities from Hugging Face transformers, for Tests/QualityTests/PerplexityTests.

For a fixture model (Tests/Fixtures/qwen3moe/hf) and a short public-domain text (the Zen of
Python, from CPython's `this` module), tokenize with the model's own tokenizer and compute,
in float32 with transformers:
  - llama.cpp's method: non-overlapping chunks of n_ctx tokens (BOS replacing the first token
    of each chunk when the tokenizer has one), scoring the second half of each chunk;
  - transformers' sliding-window method: windows of n_ctx advancing by `stride`, each token
    scored once (https://huggingface.co/docs/transformers/perplexity).
Writes Tests/Fixtures/perplexity/reference.json with the token ids, the settings and the
results (mean NLL and perplexity). Usage: python3 tools/make_perplexity_fixture.py
"""
import codecs
import json
import math
import os
import this  # noqa: F401  (prints the Zen of Python on import)

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "qwen3moe", "hf")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "perplexity", "reference.json")


def nll_of(model, ids, positions):
    """Sum of -log p(ids[p+1] | ids[:p+1]) over positions, and their count."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [-logp[p, ids[p + 1]].item() for p in positions]


def main():
    text = codecs.decode(this.s, "rot13")
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    ids = tokenizer(text)["input_ids"]
    bos = tokenizer.bos_token_id if ids and ids[0] == tokenizer.bos_token_id else None
    results = {}

    n_ctx = 64
    nlls = []
    for i in range(len(ids) // n_ctx):
        chunk = list(ids[i * n_ctx:(i + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        nlls += nll_of(model, chunk, range(n_ctx // 2, n_ctx - 1))
    results["llamacpp"] = {"context": n_ctx, "scored": len(nlls), "mean_nll": sum(nlls) / len(nlls),
                           "perplexity": math.exp(sum(nlls) / len(nlls))}

    stride = 32
    nlls, prev_end, begin = [], 0, 0
    while begin < len(ids):
        end = min(begin + n_ctx, len(ids))
        window = ids[begin:end]
        first_target = max(prev_end, begin + 1)
        nlls += nll_of(model, window, range(first_target - 1 - begin, end - 1 - begin))
        prev_end = end
        if end == len(ids):
            break
        begin += stride
    results["sliding"] = {"context": n_ctx, "stride": stride, "scored": len(nlls), "mean_nll": sum(nlls) / len(nlls),
                          "perplexity": math.exp(sum(nlls) / len(nlls))}

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"model": "qwen3moe/hf", "text": text, "tokens": ids, "bos": bos, "results": results,
                   "transformers": __import__("transformers").__version__}, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
