#!/usr/bin/env python3
"""Golden harmony output parsing for Tests/GenerationTests/HarmonyParserTests.

Each case is the text a GPT-OSS model generates after the prompt `<|start|>assistant`
(analysis, commentary tool calls, final answers; some cut short mid-message). The reference
parser is OpenAI's own: `openai_harmony.StreamableParser` (PyPI `openai-harmony`) fed the
o200k_harmony token ids one by one. Without EOS for cut cases: then the completed messages plus
the current partial message (its channel, recipient and content so far). Writes
Tests/Fixtures/harmony/parse-cases.json. The Swift test tokenizes the same text with the small
GPT-OSS-style fixture tokenizer (same special tokens) and must produce the same messages.

openai-harmony loads `o200k_base.tiktoken` from TIKTOKEN_ENCODINGS_BASE (no network here); the
file ships gzipped inside the `bpe-openai` wheel (see tools/make_o200k_fixtures.py):

    pip install --no-deps --target /tmp/w/site openai-harmony==0.0.8 bpe-openai==0.1.4
    mkdir -p /tmp/w/enc && gunzip -c /tmp/w/site/bpe_openai/data/o200k_base.tiktoken.gz > /tmp/w/enc/o200k_base.tiktoken
    TIKTOKEN_ENCODINGS_BASE=/tmp/w/enc PYTHONPATH=/tmp/w/site python3 tools/make_harmony_fixtures.py
"""
import json
import os
from pathlib import Path

from openai_harmony import HarmonyEncodingName, Role, StreamableParser, StreamState, load_harmony_encoding

REPO = Path(__file__).resolve().parent.parent

COMPLETE = [
    "<|channel|>analysis<|message|>User says hi. Reply politely.<|end|><|start|>assistant<|channel|>final<|message|>Hello! How can I help?<|return|>",
    "<|channel|>final<|message|>Direct answer, no reasoning.<|return|>",
    "<|channel|>analysis<|message|>Need weather. Call tool.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\", \"days\": 2}<|call|>",
    "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant to=functions.now<|channel|>commentary json<|message|>{}<|call|>",
    "<|channel|>commentary<|message|>Let me look that up.<|end|><|start|>assistant<|channel|>analysis<|message|>Hmm.\n\nTwo lines.<|end|><|start|>assistant<|channel|>final<|message|>Done: 42.<|return|>",
    "<|channel|>analysis<|message|>多语言 émoji 🚀 \"quotes\" and\ttabs<|end|><|start|>assistant<|channel|>final<|message|>答案是 **42** 🎉<|return|>",
    "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|><|return|>",
    "<|channel|>final<|message|>first part<|end|><|start|>assistant<|channel|>final<|message|>second part<|return|>",
]
CUT = [
    "<|channel|>analysis<|message|>Partial thou",
    "<|channel|>analysis<|message|>Done thinking.<|end|><|start|>assistant<|channel|>final<|message|>The answer is",
    "<|channel|>analysis<|message|>Done thinking.<|end|><|start|>assistant<|channel|>fin",
    "<|channel|>analysis<|message|>x<|end|>",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Pa",
    "<|channel|>final<|message|>emoji 🚀",
]


def messages_of(parser, cut):
    out = []
    for m in parser.messages:
        d = m.to_dict()
        out.append(dict(channel=d.get("channel"), recipient=d.get("recipient"), contentType=d.get("content_type"),
                        text="".join(c["text"] for c in d["content"]), complete=True))
    if cut and parser.state == StreamState.CONTENT:
        out.append(dict(channel=parser.current_channel, recipient=parser.current_recipient,
                        contentType=parser.current_content_type, text=parser.current_content, complete=False))
    return out


def main():
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    cases = []
    for text, cut in [(t, False) for t in COMPLETE] + [(t, True) for t in CUT]:
        parser = StreamableParser(enc, role=Role.ASSISTANT)
        for t in enc.encode(text, allowed_special="all"):
            parser.process(t)
        if not cut:
            parser.process_eos()
        cases.append(dict(text=text, cut=cut, messages=messages_of(parser, cut)))
    out = REPO / "Tests" / "Fixtures" / "harmony"
    out.mkdir(parents=True, exist_ok=True)
    (out / "parse-cases.json").write_text(json.dumps(dict(generator="tools/make_harmony_fixtures.py",
                                                          reference="openai-harmony StreamableParser", cases=cases),
                                                     ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases -> {out / 'parse-cases.json'}")


if __name__ == "__main__":
    main()
