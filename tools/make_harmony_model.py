#!/usr/bin/env python3
"""A tiny Mixtral whose greedy reply is a harmony conversation, for end-to-end tests of
`moe run` / `moe chat` / `moe serve` / `Session` on a harmony model (GPT-OSS's format) without
GPT-OSS weights.

The tokenizer is the GPT-OSS-style fixture tokenizer (Tests/Fixtures/tokenizers/gpt-oss/hf: the
o200k pre-tokenizer and the harmony special tokens) with GPT-OSS's real chat template
(Tests/Fixtures/chat-templates/gpt-oss.jinja). The weights are set by hand so that, after the
rendered prompt, greedy decoding writes

    <|channel|>analysis<|message|>Think<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>

How: one layer; each scripted token's embedding is a one-hot in its own slot; the LM head maps
a token's slot to its successor. Tokens whose successor differs between the analysis part and
the answer (`<|channel|>` → analysis/final, `<|message|>` → Think/Hello, `al`) look at one
more slot that attention fills: q and k are zero, so attention averages the values of all
positions so far, and only the last token of "Think" has a value — after it, that slot is
positive and tips those tokens to their second successor (for prompts of ~100 to ~900
tokens; the tests stay within that). Experts and router are zero.

The reference is transformers itself: `MixtralForCausalLM.generate` (greedy) on the prompt
rendered by `apply_chat_template`, for a first turn and for a second turn whose history holds
the first reply (its analysis dropped by the template). The generated text is split into
channels by OpenAI's `openai_harmony` parser (o200k ids of the same text), when available.
Writes Tests/Fixtures/harmony/model/ (HF directory, float16, ~0.3 MB),
Tests/Fixtures/harmony/model-f16.gguf (llama.cpp's converter, through make_fixtures.py's wrapper
that names the pre-tokenizer `gpt-4o` for this trained tokenizer: the GGUF carries the harmony
tokens as control tokens and the template as `tokenizer.chat_template`) and
Tests/Fixtures/harmony/model-reference.json.

    python3 tools/make_harmony_model.py [--converter .../llama.cpp/convert_hf_to_gguf.py]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "Tests" / "Fixtures"
OUT = FIX / "harmony" / "model"
PHASE1 = "<|channel|>analysis<|message|>Think"
PHASE2 = "<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>"
HIDDEN = 32
HEADS = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--converter", default="/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py")
    args = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    src = FIX / "tokenizers" / "gpt-oss" / "hf"
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copyfile(src / name, OUT / name)
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["chat_template"] = (FIX / "chat-templates" / "gpt-oss.jinja").read_text(encoding="utf-8")
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False))
    tok = AutoTokenizer.from_pretrained(str(OUT))
    vocab = len(tok)
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]

    prompt_tail = ids("<|start|>assistant")[-1]  # the prompt ends with it
    p1 = [prompt_tail] + ids(PHASE1)
    p2 = ids(PHASE2)
    marker = p1[-1]  # last token of "Think": switches to phase 2 once seen
    succ1, succ2 = {}, {}
    for seq, succ in ((p1, succ1), ([marker] + p2, succ2)):
        for a, b in zip(seq, seq[1:]):
            assert succ.get(a, b) == b, f"token {a} has two successors in one phase"
            succ[a] = b
    scripted = sorted(set(p1) | set(p2))
    assert len(scripted) + 1 <= HIDDEN
    slot = {t: i for i, t in enumerate(scripted)}
    E = HIDDEN - 1

    cfg = MixtralConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=8, num_hidden_layers=1,
                        num_attention_heads=HEADS, num_key_value_heads=HEADS, head_dim=HIDDEN // HEADS,
                        num_local_experts=2, num_experts_per_tok=2, max_position_embeddings=4096,
                        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                        bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>"),
                        eos_token_id=tok.convert_tokens_to_ids("<|return|>"))
    torch.manual_seed(0)
    model = MixtralForCausalLM(cfg).eval()
    sd = model.state_dict()
    with torch.no_grad():
        for k in sd:
            sd[k].zero_()
        for k in sd:
            if k.endswith("norm.weight"):
                sd[k].fill_(1.0)
        emb = sd["model.embed_tokens.weight"]
        for t, i in slot.items():
            emb[t, i] = 1.0
        # value: the marker's slot → head 0, dim 0; output: head 0 dim 0 → slot E.
        sd["model.layers.0.self_attn.v_proj.weight"][0, slot[marker]] = 1.0
        # E = 100 * sqrt(HIDDEN) / (position + 1); with w = 0.85 below, prompts of ~100-900 tokens
        # keep w*E in (0.5, 5): enough to tip the two-successor tokens, too little to override a 10.
        sd["model.layers.0.self_attn.o_proj.weight"][E, 0] = 100.0
        head = sd["lm_head.weight"]
        w = 0.85
        for t in scripted:
            a, b = succ1.get(t), succ2.get(t)
            if a is not None and b is not None and a != b:
                head[a, slot[t]] += 10.0
                head[b, slot[t]] += 9.0
                head[a, E] -= w
                head[b, E] += w
            else:
                n = a if a is not None else b
                if n is not None:
                    head[n, slot[t]] += 10.0
        model.load_state_dict(sd)
    # float16 on disk halves the fixture; every weight (0, 1, 9, 10, ±0.85, 100) survives the cast.
    model.to(torch.float16).save_pretrained(str(OUT), safe_serialization=True)
    model.to(torch.float32)
    (OUT / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": cfg.bos_token_id, "eos_token_id": [cfg.eos_token_id, tok.convert_tokens_to_ids("<|call|>")],
         "do_sample": False}, indent=1))

    converter = Path(args.converter)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(converter.parent / "gguf-py"), str(converter.parent)]))
    subprocess.run([sys.executable, str(REPO / "tools" / "make_fixtures.py"), "--_convert-wrapper", "gpt-4o", str(converter),
                    str(OUT), "--outfile", str(FIX / "harmony" / "model-f16.gguf"), "--outtype", "f16",
                    "--model-name", "harmony-test"], env=env, check=True, stdout=subprocess.DEVNULL)

    def generate(messages):
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                                 eos_token_id=[cfg.eos_token_id, tok.convert_tokens_to_ids("<|call|>")])
        gen = out[0, len(prompt):].tolist()
        return prompt, gen

    first = [{"role": "user", "content": "Hi"}]
    prompt1, gen1 = generate(first)
    text1 = tok.decode(gen1, skip_special_tokens=False)
    assert text1 == PHASE1 + PHASE2, text1
    second = first + [{"role": "assistant", "content": "Hello", "thinking": "Think"}, {"role": "user", "content": "Again"}]
    prompt2, gen2 = generate(second)
    text2 = tok.decode(gen2, skip_special_tokens=False)
    rendered2 = tok.apply_chat_template(second, add_generation_prompt=True, tokenize=False)
    channels = None
    try:
        from openai_harmony import HarmonyEncodingName, Role, StreamableParser, load_harmony_encoding
        enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
        parser = StreamableParser(enc, role=Role.ASSISTANT)
        for t in enc.encode(text1, allowed_special="all"):
            parser.process(t)
        channels = [{"channel": m.channel, "text": m.content[0].text} for m in parser.messages]
    except Exception as e:  # openai-harmony is optional here
        print("openai-harmony not used:", e)
    ref = {"generator": "tools/make_harmony_model.py", "reference": "transformers MixtralForCausalLM.generate (greedy)",
           "turns": [{"messages": first, "promptTokens": len(prompt1), "generated": gen1, "text": text1},
                     {"messages": second, "promptTokens": len(prompt2), "generated": gen2, "text": text2,
                      "renderedPrompt": rendered2}],
           "harmonyChannels": channels}
    (FIX / "harmony" / "model-reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n")
    print("turn 1:", len(prompt1), "prompt tokens ->", text1)
    print("turn 2:", len(prompt2), "prompt tokens ->", text2)
    print("channels:", channels)


if __name__ == "__main__":
    main()
