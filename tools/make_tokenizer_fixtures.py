#!/usr/bin/env python3
"""Golden tokenizer fixtures for Tests/TokenizerTests.

For every family below this script
  * trains a small tokenizer (vocab ~2k) on this machine's Python 3.11 stdlib
    sources (/usr/lib/python3.11/*.py) plus a few stdlib test files that carry
    non-Latin text (test/test_unicode_identifiers.py, test/test_str.py,
    test/test_codecs.py, test/test_ucn.py), reproducing the family's real
    tokenizer.json configuration (normalizer, pre-tokenizer regexes, decoder,
    post-processor, ignore_merges, special tokens);
  * saves it as a Hugging Face directory (transformers ``save_pretrained``:
    tokenizer.json + tokenizer_config.json);
  * writes a GGUF holding only tokenizer metadata, produced by llama.cpp's own
    converter code: ``TextModel.get_vocab_base`` / ``_create_vocab_sentencepiece``
    from ``conversion/base.py`` (called on a small stand-in object, because
    there is no model) and ``gguf.SpecialVocab`` from the converter's vendored
    gguf-py, exactly as ``_set_vocab_gpt2`` / ``_set_vocab_sentencepiece`` do;
  * encodes a corpus of test strings with the reference implementation and
    stores the ids: transformers ``AutoTokenizer`` for HF directories; for GGUF
    files the same ids (byte-level BPE) or, for SentencePiece, the
    ``sentencepiece`` library on each text fragment between special tokens
    (what llama.cpp's SPM tokenizer does; see docs/tokenizer.md).

It also records references for the tokenizers inside the existing model
fixtures (Tests/Fixtures/{mixtral,qwen2moe,qwen3moe,olmoe}).

Output: Tests/Fixtures/tokenizers/<family>/{hf/,tokenizer.gguf} and
Tests/Fixtures/tokenizers/<name>.json (cases). Python never runs at test time.

    pip install -r tools/requirements-fixtures.txt
    python3 tools/make_tokenizer_fixtures.py [--converter-dir DIR]

The converter directory defaults to
/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp (see tools/README.md).
Deterministic: a rerun on the same machine rewrites identical files.
"""
from __future__ import annotations

import argparse
import glob
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
DEFAULT_CONVERTER_DIR = "/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp"
VOCAB = 2000

# --- pre-tokenizer regexes exactly as the families' tokenizer.json files ship them ---
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DSV3 = [r"\p{N}{1,3}",
        "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^" + "\r\n" + r"\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+["
        + "\r\n" + r"]*|\s*[" + "\r\n" + r"]+|\s+(?!\S)|\s+"]
DSLLM = ["[\r\n]",
         "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
         "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
         "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
         "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
         "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
         "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
         "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
         "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
         "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
         "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
         "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+",
         "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
         "\\s+$",
         "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
         "\\p{N}+"]
# (copied with escapes from llama.cpp's llama-vocab.cpp: literal characters there would be
#  NFC-normalized by some editors, which turns ranges such as U+1FD0-U+1FD3 into empty ones)

# family -> configuration of the real tokenizer.json it imitates
FAMILIES = {
    "qwen2": dict(pre="qwen2", nfc=True, splits=[QWEN2], byte_regex=False, ignore_merges=False,
                  specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], user=["<tool_call>"],
                  bos=None, eos="<|endoftext|>", pad="<|endoftext|>"),
    "llama3": dict(pre="llama-bpe", nfc=False, splits=[LLAMA3], byte_regex=False, ignore_merges=True,
                   specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"], user=[],
                   bos="<|begin_of_text|>", eos="<|end_of_text|>", pad=None),
    "olmoe": dict(pre="olmo", nfc=False, splits=[], byte_regex=True, ignore_merges=False,
                  specials=["<|endoftext|>", "<|padding|>"], user=[],
                  bos=None, eos="<|endoftext|>", pad="<|padding|>"),
    "deepseek-v3": dict(pre="deepseek-v3", nfc=False, splits=DSV3, byte_regex=False, ignore_merges=False,
                        specials=["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"],
                        user=[], bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad=None),
    "deepseek-llm": dict(pre="deepseek-llm", nfc=False, splits=DSLLM, byte_regex=False, ignore_merges=False,
                         specials=["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"], user=[],
                         bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad=None),
    "gpt-oss": dict(pre="gpt-4o", nfc=False, splits=[O200K], byte_regex=False, ignore_merges=False,
                    specials=["<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>",
                              "<|channel|>", "<|return|>", "<|call|>"], user=[],
                    bos="<|startoftext|>", eos="<|return|>", pad="<|endoftext|>", add_bos=False),
}

# --- the test strings ---
CASES = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you today?",
    " leading space and trailing space ",
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "class Foo:\n\tdef bar(self):\n\t\tpass\n",
    "    four spaces then text",
    "a  b   c    d\t\te\n\nf\r\ng\r\n\r\nh",
    "trailing newlines\n\n\n",
    "   \n  \n\t",
    "\n",
    "1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 2024-01-15",
    "Version 0.3.36, port 8080, 99 bottles",
    "你好，世界！我想在apple工作1314151天。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트입니다",
    "Emoji: 😀 🚀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
    "Combining: e\u0301 a\u0300 n\u0303 — precomposed: é à ñ",
    "Zalgo: Z\u0351\u036b\u0343a\u0310\u0352l\u0350g\u0344o",
    "Arabic: مرحبا بالعالم. Hebrew: שלום עולם",
    "Mixed RTL: abc مرحبا 123 שלום!",
    "Russian: нещо на Български и Русский язык",
    "Greek: Καλημέρα κόσμε; Thai: สวัสดีครับ; Khmer: កាន់តែពិសេសអាច",
    "Hindi: नमस्ते दुनिया",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
    "don't can't won't it's we're they've I'd you'll",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'ſ",
    "------======= ''''''```````\"\"\"\"......!!!!!!??????",
    "Special <|endoftext|> in the middle <|im_start|>user\nhi<|im_end|>",
    "<s>Hello</s> <unk> [INST] hi [/INST]",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜>",
    "<|start|>assistant<|channel|>final<|message|>Done.<|return|>",
    "Replacement char \ufffd and controls \x00\x01\x07\x1b[0m \x7f \u200b\u200d\ufeff",
    "Tabs\tand\u00a0nbsp\u2003em space\u3000ideographic",
    "URL: https://example.com/path?query=1&b=2#frag",
    "email@example.com, C++ & C#; x->y; a==b; i++; ~/.bashrc",
    "ALLCAPS CamelCaseWord mixedCASE HTTPServer iPhone",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "µ ſ ﬁ Ω K Å",
    "x" * 300,
    "ab" * 120 + " " + "9" * 50,
]
# strings with special-token syntax, also encoded with parse_special=false
NO_SPECIAL = [
    "Special <|endoftext|> in the middle <|im_start|>user\nhi<|im_end|>",
    "<s>Hello</s> <unk> [INST] hi [/INST]",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<｜begin▁of▁sentence｜><｜User｜>Hello<｜Assistant｜>",
    "<|start|>assistant<|channel|>final<|message|>Done.<|return|>",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def corpus_lines() -> list[str]:
    stdlib = Path("/usr/lib/python3.11")
    files = sorted(stdlib.glob("*.py"))
    files += [stdlib / "test" / n for n in ("test_unicode_identifiers.py", "test_str.py", "test_codecs.py", "test_ucn.py")]
    lines: list[str] = []
    for f in files:
        if f.is_file():
            lines.extend(f.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True))
    return lines


# ----------------------------------------------------------------------------
# building tokenizers
# ----------------------------------------------------------------------------

def build_bpe(dst: Path, cfg: dict) -> None:
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False,
                               ignore_merges=cfg["ignore_merges"]))
    if cfg["nfc"]:
        tok.normalizer = normalizers.NFC()
    if cfg["splits"]:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in cfg["splits"]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = cfg["specials"]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(specials) - len(cfg["user"]), min_frequency=2,
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    tok.add_special_tokens(specials)
    tok.add_tokens(cfg["user"])
    if cfg["bos"] and cfg.get("add_bos", True):
        bos_id = tok.token_to_id(cfg["bos"])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{cfg['bos']} $A", pair=f"{cfg['bos']} $A {cfg['bos']} $B",
                                          special_tokens=[(cfg["bos"], bos_id)])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=cfg["bos"], eos_token=cfg["eos"],
                                 pad_token=cfg["pad"], unk_token=None, clean_up_tokenization_spaces=False)
    hf.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    hf.save_pretrained(str(dst))
    compact_json(dst / "tokenizer.json")


def compact_json(path: Path) -> None:
    """save_pretrained indents tokenizer.json; the same JSON without whitespace is half the size."""
    obj = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def build_sentencepiece(dst: Path, work: Path) -> Path:
    """Mixtral-style SentencePiece BPE (byte_fallback, add_dummy_prefix, split_digits); legacy HF files."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    work.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus_lines()), model_prefix="tokenizer", model_type="bpe",
            vocab_size=VOCAB, byte_fallback=True, character_coverage=0.9995, split_digits=True,
            add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
            allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1, max_sentence_length=100000, minloglevel=2)
    finally:
        os.chdir(cwd)
    model = work / "tokenizer.model"
    slow = LlamaTokenizer(vocab_file=str(model), legacy=True, add_bos_token=True, add_eos_token=False)
    slow.save_pretrained(str(work / "slow"))
    fast = LlamaTokenizerFast.from_pretrained(str(work / "slow"), from_slow=True, legacy=True)
    fast.chat_template = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    fast.save_pretrained(str(dst))
    compact_json(dst / "tokenizer.json")
    return model


# ----------------------------------------------------------------------------
# GGUF through llama.cpp's converter code
# ----------------------------------------------------------------------------

def load_converter(converter_dir: str):
    sys.path.insert(0, str(Path(converter_dir) / "gguf-py"))
    sys.path.insert(0, converter_dir)
    import gguf as conv_gguf  # the converter's vendored gguf-py
    from conversion import base
    return conv_gguf, base


class VocabSource:
    """Stands in for a converter ``TextModel``: only what the vocab functions read."""

    def __init__(self, base, dir_model: Path, hparams: dict, pre: str | None):
        self.dir_model = dir_model
        self.hparams = hparams
        self._pre = pre
        self._base = base

    def get_vocab_base_pre(self, tokenizer) -> str:
        return self._pre

    def does_token_look_special(self, token):
        return self._base.TextModel.does_token_look_special(self, token)

    def find_hparam(self, keys, optional=False):
        for k in keys:
            if k in self.hparams:
                return self.hparams[k]
        return None


def write_gguf(conv, base, hf_dir: Path, out: Path, pre: str | None, sp_model: Path | None) -> None:
    writer = conv.GGUFWriter(str(out), "llama")
    writer.add_name("tokenizer fixture")
    if sp_model is None:
        from transformers import AutoTokenizer
        n = len(AutoTokenizer.from_pretrained(str(hf_dir)))
        src = VocabSource(base, hf_dir, {"vocab_size": n}, pre)
        tokens, toktypes, tokpre = base.TextModel.get_vocab_base(src)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(tokpre)
        writer.add_token_list(tokens)
        writer.add_token_types(toktypes)
        conv.SpecialVocab(hf_dir, load_merges=True).add_to_gguf(writer)
    else:
        tmp = Path(tempfile.mkdtemp())
        for f in hf_dir.iterdir():
            shutil.copyfile(f, tmp / f.name)
        shutil.copyfile(sp_model, tmp / "tokenizer.model")
        src = VocabSource(base, tmp, {}, None)
        tokens, scores, toktypes = base.TextModel._create_vocab_sentencepiece(src)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(toktypes)
        conv.SpecialVocab(tmp, n_vocab=len(tokens)).add_to_gguf(writer)
        shutil.rmtree(tmp)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ----------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------

def hf_cases(hf_dir: Path) -> list[dict]:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    nosplit = AutoTokenizer.from_pretrained(str(hf_dir), split_special_tokens=True)
    out = []
    for text in CASES:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        plain = tok(text, add_special_tokens=False)["input_ids"]
        decoded = tok.decode(plain, skip_special_tokens=False)
        case = dict(text=text, ids=ids, idsNoBOS=plain, decoded=decoded, roundTrips=decoded == text)
        if text in NO_SPECIAL:
            case["idsNoParseSpecial"] = nosplit(text, add_special_tokens=False)["input_ids"]
        out.append(case)
    return out


def spm_cases(sp_model: Path, specials: dict[str, int], bos: int, user: set[str]) -> list[dict]:
    """llama.cpp SPM semantics: text between special tokens goes through sentencepiece, each
    fragment with its dummy prefix; BOS first."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    names = sorted(specials, key=len, reverse=True)

    def encode(text: str, parse_special: bool) -> list[int]:
        ids, i, start = [], 0, 0
        while i < len(text):
            hit = next((n for n in names if text.startswith(n, i) and (parse_special or n in user)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                ids += sp.encode(text[start:i])
            ids.append(specials[hit])
            i += len(hit)
            start = i
        if start < len(text):
            ids += sp.encode(text[start:])
        return ids

    out = []
    for text in CASES:
        plain = encode(text, True)
        decoded = sp.decode(plain)
        case = dict(text=text, ids=[bos] + plain, idsNoBOS=plain, decoded=None, roundTrips=decoded == text)
        if text in NO_SPECIAL:
            case["idsNoParseSpecial"] = encode(text, False)
        out.append(case)
    return out


def gguf_special_tokens(path: Path) -> tuple[dict[str, int], set[str], int]:
    import gguf
    r = gguf.GGUFReader(str(path))
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    bos = int(f["tokenizer.ggml.bos_token_id"].parts[-1][0])
    specials = {t: i for i, (t, ty) in enumerate(zip(toks, types)) if ty in (2, 3, 4)}
    user = {t for t, ty in zip(toks, types) if ty == 4}
    return specials, user, bos


def dump(path: Path, obj: dict) -> None:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    path.write_text(text.replace(',{"text"', ',\n{"text"') + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--converter-dir", default=os.environ.get("LLAMA_CPP_DIR", DEFAULT_CONVERTER_DIR))
    ap.add_argument("--out", default=str(REPO / "Tests" / "Fixtures" / "tokenizers"))
    args = ap.parse_args()
    conv, base = load_converter(args.converter_dir)
    import transformers
    transformers.logging.set_verbosity_error()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())

    for name, cfg in FAMILIES.items():
        log(f"{name}: training BPE, pre={cfg['pre']}")
        fdir = out / name
        shutil.rmtree(fdir, ignore_errors=True)
        build_bpe(fdir / "hf", cfg)
        write_gguf(conv, base, fdir / "hf", fdir / "tokenizer.gguf", cfg["pre"], None)
        cases = hf_cases(fdir / "hf")
        dump(out / f"{name}.json", dict(family=name, pre=cfg["pre"], hf="tokenizers/" + name + "/hf",
                                        gguf="tokenizers/" + name + "/tokenizer.gguf",
                                        hfCases=cases, ggufCases="same"))

    log("spm (Mixtral-style SentencePiece, legacy HF files)")
    fdir = out / "spm"
    shutil.rmtree(fdir, ignore_errors=True)
    model = build_sentencepiece(fdir / "hf", work / "spm")
    write_gguf(conv, base, fdir / "hf", fdir / "tokenizer.gguf", None, model)
    specials, user, bos = gguf_special_tokens(fdir / "tokenizer.gguf")
    dump(out / "spm.json", dict(family="spm", pre="default", hf="tokenizers/spm/hf", gguf="tokenizers/spm/tokenizer.gguf",
                                hfCases=hf_cases(fdir / "hf"), ggufCases=spm_cases(model, specials, bos, user)))

    # tokenizers inside the existing model fixtures
    fixtures = REPO / "Tests" / "Fixtures"
    for case, gguf_name in (("mixtral", "model-f32.gguf"), ("qwen2moe", "model-q8_0.gguf"),
                            ("qwen3moe", "model-q8_0.gguf"), ("olmoe", "model-q8_0.gguf")):
        log(f"model fixture {case}")
        hf = hf_cases(fixtures / case / "hf")
        if case == "mixtral":
            specials, user, bos = gguf_special_tokens(fixtures / case / gguf_name)
            gg = spm_cases(fixtures / case / "hf" / "tokenizer.model", specials, bos, user)
        else:
            gg = "same"
        dump(out / f"model-{case}.json", dict(family=case, pre=None, hf=f"{case}/hf", gguf=f"{case}/{gguf_name}",
                                              hfCases=hf, ggufCases=gg))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
