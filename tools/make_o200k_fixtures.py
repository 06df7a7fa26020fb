#!/usr/bin/env python3
"""The real o200k_harmony tokenizer (GPT-OSS) as a heavy, opt-in tokenizer check.

GPT-OSS's tokenizer is tiktoken's ``o200k_harmony``: the 200k ``o200k_base`` ranks, the o200k
split regex and the harmony special tokens (ids 199998..201087). Its tokenizer.json on the Hub
was made by transformers' ``TikTokenConverter``; its GGUF by llama.cpp's converter
(``tokenizer.ggml.pre = "gpt-4o"``). The 200k vocabulary is too large to commit (27 MB of
JSON), so this script

  * reads ``o200k_base.tiktoken.gz``, which the PyPI package ``bpe-openai`` ships inside its
    wheel (tiktoken itself downloads the file at run time; there is no network here);
  * builds the reference encoder: ``tiktoken.Encoding`` with ``o200k_harmony``'s pattern and
    special tokens, exactly as ``tiktoken_ext/openai_public.py`` defines them;
  * writes, into OUT (default ``.build-o200k/`` in the repository, ignored by git):
      OUT/hf/   tokenizer.json + tokenizer_config.json (``TikTokenConverter`` with the o200k
                pattern and the harmony specials, saved by transformers)
      OUT/tokenizer.gguf  tokenizer-only GGUF by llama.cpp's converter functions, pre "gpt-4o"
  * records tiktoken's ids for hard strings (letter-case classes, contractions in capitals,
    numbers, whitespace runs, emoji, CJK, harmony specials) into the committed
    ``Tests/Fixtures/tokenizers/o200k-harmony.json`` (a few KB), after checking that
    transformers' tokenizer of OUT/hf gives the same ids.

``swift test --filter O200kTests`` then compares SwiftMoE's tokenizer (tokenizer.json and GGUF)
with those ids when ``MOE_O200K_DIR`` points at OUT; without it the test is skipped.

    pip download --no-deps bpe-openai==0.1.4 -d /tmp/w && pip install --no-deps --target /tmp/w/site /tmp/w/*.whl
    pip install --no-deps --target /tmp/w/site tiktoken==0.14.0 regex
    PYTHONPATH=/tmp/w/site python3 tools/make_o200k_fixtures.py
    MOE_O200K_DIR=$PWD/.build-o200k swift test --filter O200kTests
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tokenizer_fixtures as mtf  # noqa: E402  (CASES, write_gguf, load_converter)

EXTRA_CASES = [
    "HTTPServer's URLs'RE OK, McDonald'S and O'NEILL'LL DON'T",
    "ǅungla ǈubav ǋ Titlecase ᾈ letters, modifier ʰʲ ˢ and marks a\u0301\u0302b",
    "Ａ́ ΆΈ Ὰ Ǆ ǅ ǆ ß ẞ İstanbul ıi",
    "12345678901234567890 ١٢٣٤٥ ๑๒๓ ⅣⅫ ½¾ 3.5e-10 0x1F",
    "path/to/file.txt\n//comment\r\n/* c */ a/b/c/ \\\\server\\share",
    "   leading\t\t\ttabs  \n\n\n   \r\n \u00a0\u2009\u3000trailing   ",
    "🧑🏻‍💻 👩‍❤️‍💋‍👨 🇺🇳🇯🇵 🏴󠁧󠁢󠁳󠁣󠁴󠁿 ⌚️ 1️⃣",
    "中文，日本語の文章、한국어 텍스트와 English mixed 中英混合123。",
    "<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>Hi<|end|>"
    "<|start|>assistant<|channel|>analysis<|message|>Think.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"x\":1}<|call|>",
    "<|endoftext|><|startoftext|><|reserved_200017|><|endofprompt|> <|not a token|>",
    "The CAT's HAT'S 'LL 'Ve 'd 'M 'ReALLY",
]
NO_SPECIAL = {EXTRA_CASES[8], EXTRA_CASES[9]}


def o200k_harmony(ranks: dict[bytes, int]):
    import tiktoken
    from tiktoken_ext import openai_public as op

    base_pat = None
    orig = op.load_tiktoken_bpe
    op.load_tiktoken_bpe = lambda *a, **k: ranks
    try:
        spec = op.o200k_harmony()
        base_pat = spec["pat_str"]
    finally:
        op.load_tiktoken_bpe = orig
    return tiktoken.Encoding(name=spec["name"], pat_str=base_pat, mergeable_ranks=spec["mergeable_ranks"],
                             special_tokens=spec["special_tokens"]), spec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / ".build-o200k"))
    ap.add_argument("--converter-dir", default=os.environ.get("LLAMA_CPP_DIR", mtf.DEFAULT_CONVERTER_DIR))
    args = ap.parse_args()

    import bpe_openai
    ranks_path = Path(bpe_openai.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    import base64
    ranks: dict[bytes, int] = {}
    for line in gzip.open(ranks_path, "rt").read().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    enc, spec = o200k_harmony(ranks)
    # o200k_harmony maps both <|endofprompt|> (from o200k_base) and <|reserved_200018|> to 200018;
    # GPT-OSS's tokenizer.json names 200018 <|endofprompt|>. One name per id:
    specials = {}
    for name, i in spec["special_tokens"].items():
        if i not in specials.values():
            specials[name] = i
    enc = __import__("tiktoken").Encoding(name="o200k_harmony", pat_str=spec["pat_str"],
                                          mergeable_ranks=ranks, special_tokens=specials)
    print(f"o200k_base: {len(ranks)} ranks, {len(specials)} specials", flush=True)

    out = Path(args.out)
    hf = out / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "o200k_base.tiktoken"
        plain.write_bytes(gzip.open(ranks_path).read())
        from transformers.convert_slow_tokenizer import TikTokenConverter
        from transformers import PreTrainedTokenizerFast
        ordered = sorted(specials, key=specials.get)
        tok = TikTokenConverter(vocab_file=str(plain), pattern=spec["pat_str"],
                                additional_special_tokens=ordered).converted()
    for name in ordered:  # the converter numbers added tokens after the vocabulary: check
        assert tok.token_to_id(name) == specials[name], name
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|return|>",
                                   pad_token="<|endoftext|>", clean_up_tokenization_spaces=False)
    fast.chat_template = (REPO / "Tests" / "Fixtures" / "chat-templates" / "gpt-oss.jinja").read_text(encoding="utf-8")
    fast.save_pretrained(str(hf))

    conv, base = mtf.load_converter(args.converter_dir)
    mtf.write_gguf(conv, base, hf, out / "tokenizer.gguf", "gpt-4o", None)

    from transformers import AutoTokenizer
    reloaded = AutoTokenizer.from_pretrained(str(hf))
    cases = []
    for text in mtf.CASES + EXTRA_CASES:
        ids = enc.encode(text, allowed_special="all")
        hf_ids = reloaded(text, add_special_tokens=False)["input_ids"]
        if hf_ids != ids:
            raise SystemExit(f"transformers and tiktoken disagree on {text!r}:\n {hf_ids}\n {ids}")
        case = dict(text=text, ids=ids, decoded=enc.decode(ids))
        if text in NO_SPECIAL or text in mtf.NO_SPECIAL:
            case["idsNoParseSpecial"] = enc.encode_ordinary(text)
        cases.append(case)
    dst = REPO / "Tests" / "Fixtures" / "tokenizers" / "o200k-harmony.json"
    mtf.dump(dst, dict(generator="tools/make_o200k_fixtures.py", reference="tiktoken o200k_harmony",
                       vocab=enc.n_vocab, cases=cases))
    print(f"{len(cases)} cases -> {dst}; tokenizer files in {out}")


if __name__ == "__main__":
    main()
