#!/usr/bin/env python3
"""Golden fixtures for Hugging Face directories whose tokenizer is only `tokenizer.model`.

Many Llama/Mixtral-era repositories ship SentencePiece's `tokenizer.model` with a
`tokenizer_config.json` and no `tokenizer.json`; transformers then builds its fast tokenizer by
converting the SentencePiece model (`LlamaConverter`), honouring `legacy`, `add_bos_token`,
`add_eos_token` and the added tokens of `tokenizer_config.json`. This script writes such
directories from the SentencePiece model of Tests/Fixtures/tokenizers/spm and records the ids
transformers' `AutoTokenizer` produces for every test string (the strings of
make_tokenizer_fixtures.py), so Tests/TokenizerTests can compare without Python:

    Tests/Fixtures/tokenizers/spm-only-legacy/   legacy true, BOS, no EOS (Mixtral's settings)
    Tests/Fixtures/tokenizers/spm-only/          legacy false, BOS and EOS, two added special
                                                 tokens and one added normal token
    Tests/Fixtures/tokenizers/<name>.json        cases: text, ids, idsNoBOS (add_special_tokens
                                                 false), decoded, roundTrips

It also checks that the Mixtral model fixture's directory, with its tokenizer.json removed,
gives transformers the ids already recorded in model-mixtral.json, so the model-level test can
reuse those goldens.

    pip install -r tools/requirements-fixtures.txt
    python3 tools/make_spm_only_fixtures.py

Deterministic: a rerun rewrites identical files.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
from make_tokenizer_fixtures import CASES  # noqa: E402  (the shared test strings)

EXTRA = [
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "Hi <|im_start|> there<|im_end|>x",
    "a <tool> call<tool>again",
    "  two leading spaces, then\n  newline and spaces",
    "9876543210 and 3.5e-7",
    "bytes: \u0001\u0002 ÿ Ā ~ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cases_for(directory: Path) -> tuple[list[dict], str]:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(directory))
    slow = AutoTokenizer.from_pretrained(str(directory), use_fast=False)
    out = []
    for text in CASES + EXTRA:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        plain = tok(text, add_special_tokens=False)["input_ids"]
        slow_ids = slow(text, add_special_tokens=True)["input_ids"]
        decoded = tok.decode(plain, skip_special_tokens=False)
        case = dict(text=text, ids=ids, idsNoBOS=plain, decoded=decoded, roundTrips=decoded == text)
        if slow_ids != ids:
            case["slowIds"] = slow_ids  # transformers' slow tokenizer disagrees; the fast one is AutoTokenizer's
        out.append(case)
    return out, type(tok).__name__


def dump(path: Path, obj: dict) -> None:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text.replace(',{"text"', ',\n{"text"') + "\n", encoding="utf-8")


def main() -> None:
    import transformers
    from transformers import AutoTokenizer, LlamaTokenizer
    transformers.logging.set_verbosity_error()
    out = REPO / "Tests" / "Fixtures" / "tokenizers"
    model = out / "spm" / "hf" / "tokenizer.model"

    variants = {
        "spm-only-legacy": dict(legacy=True, add_bos_token=True, add_eos_token=False, specials=[], normal=[]),
        "spm-only": dict(legacy=False, add_bos_token=True, add_eos_token=True,
                         specials=["<|im_start|>", "<|im_end|>"], normal=["<tool>"]),
    }
    for name, v in variants.items():
        log(f"{name}: legacy={v['legacy']} bos={v['add_bos_token']} eos={v['add_eos_token']}")
        d = out / name
        shutil.rmtree(d, ignore_errors=True)
        with tempfile.TemporaryDirectory() as work:
            slow = LlamaTokenizer(vocab_file=str(model), legacy=v["legacy"], add_bos_token=v["add_bos_token"],
                                  add_eos_token=v["add_eos_token"])
            if v["specials"]:
                slow.add_special_tokens({"additional_special_tokens": v["specials"]})
            if v["normal"]:
                slow.add_tokens(v["normal"])
            slow.save_pretrained(work)
            d.mkdir(parents=True)
            for f in sorted(os.listdir(work)):
                if f != "tokenizer.json":
                    shutil.copy(Path(work) / f, d / f)
        assert not (d / "tokenizer.json").exists()
        cases, cls = cases_for(d)
        dump(out / f"{name}.json", dict(family=name, legacy=v["legacy"], tokenizerClass=cls, hf=f"tokenizers/{name}", cases=cases))
        log(f"  {len(cases)} cases, transformers built {cls}; slow differs on {sum('slowIds' in c for c in cases)}")

    # The Mixtral model fixture without its tokenizer.json must tokenize as recorded with it.
    recorded = json.loads((REPO / "Tests" / "Fixtures" / "tokenizers" / "model-mixtral.json").read_text())["hfCases"]
    with tempfile.TemporaryDirectory() as work:
        src = REPO / "Tests" / "Fixtures" / "mixtral" / "hf"
        for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
            shutil.copy(src / f, Path(work) / f)
        tok = AutoTokenizer.from_pretrained(work)
        bad = [c["text"] for c in recorded if tok(c["text"])["input_ids"] != c["ids"]]
        if bad:
            sys.exit(f"mixtral fixture: tokenizer.model alone disagrees with tokenizer.json on {len(bad)} strings: {bad[:3]}")
    log("mixtral fixture: tokenizer.model alone gives the recorded ids")

    # Older directories: no added_tokens_decoder, so special_tokens_map.json (which wins over the
    # config's names) and added_tokens.json define the specials; the ids must not change.
    golden = json.loads((out / "spm-only.json").read_text())["cases"]
    with tempfile.TemporaryDirectory() as work:
        for f in ("tokenizer.model", "special_tokens_map.json", "added_tokens.json"):
            shutil.copy(out / "spm-only" / f, Path(work) / f)
        config = json.loads((out / "spm-only" / "tokenizer_config.json").read_text())
        del config["added_tokens_decoder"]
        config["bos_token"] = "<unk>"
        (Path(work) / "tokenizer_config.json").write_text(json.dumps(config))
        tok = AutoTokenizer.from_pretrained(work)
        bad = [c["text"] for c in golden if tok(c["text"])["input_ids"] != c["ids"]]
        if bad or tok.bos_token_id != 1:
            sys.exit(f"legacy added_tokens.json directory: bos {tok.bos_token_id}, {len(bad)} strings differ: {bad[:3]}")
    log("spm-only with legacy added_tokens.json and a conflicting bos_token: same ids, BOS from special_tokens_map.json")


if __name__ == "__main__":
    main()
