#!/usr/bin/env python3
"""Build tiny random-weight MoE fixtures for the Swift test suite.

For each case this script
  * trains a tiny tokenizer (SentencePiece for Mixtral, byte-level BPE for the
    Qwen / OLMoE families) on a few of the running Python's own stdlib sources,
  * builds a tiny random model with Hugging Face ``transformers`` (4.x, float32,
    eager attention) and saves it with ``save_pretrained`` (experts one by one,
    e.g. ``model.layers.0.block_sparse_moe.experts.3.w1.weight``),
  * converts it to GGUF (F32, F16, Q8_0) with llama.cpp's own
    ``convert_hf_to_gguf.py`` (GGUF-capable cases only),
  * records reference logits and router choices computed by transformers in
    float32 from *exactly* the weights stored in every model file (GGUF files
    are read back with ``gguf.GGUFReader`` and dequantized with
    ``gguf.quants.dequantize``; HF bf16/f16 copies are upcast to float32).

Outputs go to ``Tests/Fixtures/<case>/`` (see tools/README.md for the layout).
Python never runs at test time; the Swift tests read these files.

Usage
-----
    pip install -r tools/requirements-fixtures.txt
    # llama.cpp's converter, taken from the llama-cpp-python sdist (not committed):
    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /opt/moe-cache
    tar -xzf /opt/moe-cache/llama_cpp_python-0.3.36.tar.gz -C /opt/moe-cache
    python3 tools/make_fixtures.py \
        --converter /opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py

Options / environment
---------------------
  --converter PATH   path to llama.cpp's convert_hf_to_gguf.py; defaults to the
                     environment variable LLAMA_CPP_CONVERTER, then to
                     /opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py.
                     The converter is run in a subprocess with its sibling
                     ``gguf-py`` directory first on PYTHONPATH.
  --out DIR          output root (default: <repo>/Tests/Fixtures)
  --cases a,b,...    only (re)build these cases (default: all)

Byte-level BPE tokenizers trained here have a pre-tokenizer hash llama.cpp does
not know, so the converter is run through a small in-process wrapper (this same
file, ``--_convert-wrapper``) that monkeypatches
``conversion.base.TextModel.get_vocab_base_pre`` to fall back to the family's
known pre-tokenizer name ("qwen2" for Qwen, "olmo" for OLMoE) when the hash is
unknown. The converter itself is not modified.

The script is deterministic (fixed seeds, 1 torch thread): rerunning it on the
same machine rewrites byte-identical files. The tokenizer corpus is read from
the running Python's stdlib, so another Python version gives another vocabulary.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

CONVERTER_VERSION = "0.3.36"  # llama-cpp-python sdist the converter comes from
DEFAULT_CONVERTER = f"/opt/moe-cache/llama_cpp_python-{CONVERTER_VERSION}/vendor/llama.cpp/convert_hf_to_gguf.py"
REPO = Path(__file__).resolve().parent.parent

SEQ_LENGTHS = [1, 7, 40]
NEAR_TIE = 1e-4          # gap between k-th and (k+1)-th router prob that counts as a near tie
SEED_SEARCH_GAP = 1e-3   # minimum gap demanded of the f32 model while choosing its seed
MAX_SEED_TRIES = 64


# ----------------------------------------------------------------------------
# converter wrapper (runs in a subprocess)
# ----------------------------------------------------------------------------

def convert_wrapper_main(argv: list[str]) -> None:
    """``make_fixtures.py --_convert-wrapper PRE CONVERTER [converter args...]``"""
    import importlib.util

    pre, converter, rest = argv[0], argv[1], argv[2:]
    conv_dir = str(Path(converter).resolve().parent)
    sys.path.insert(0, conv_dir)
    import conversion.base as base  # noqa: E402  (llama.cpp's package next to the converter)

    original = base.TextModel.get_vocab_base_pre

    def patched(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            print(f"[wrapper] unknown BPE pre-tokenizer hash: using {pre!r}", flush=True)
            return pre

    base.TextModel.get_vocab_base_pre = patched
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", converter)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.argv = [converter] + rest
    mod.main()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--_convert-wrapper":
    convert_wrapper_main(sys.argv[2:])
    sys.exit(0)


# ----------------------------------------------------------------------------
# heavy imports (main process only)
# ----------------------------------------------------------------------------
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import gguf  # noqa: E402  (PyPI gguf: reader + dequantizer, independent of the converter's copy)
from safetensors import safe_open  # noqa: E402

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------
# tokenizers
# ----------------------------------------------------------------------------

CORPUS_FILES = [
    "textwrap.py", "string.py", "json/decoder.py", "json/encoder.py", "heapq.py",
    "bisect.py", "colorsys.py", "fractions.py", "difflib.py", "argparse.py",
]


def corpus_lines() -> list[str]:
    import sysconfig
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    lines: list[str] = []
    for rel in CORPUS_FILES:
        p = stdlib / rel
        if not p.is_file():
            continue
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.rstrip()
            if line and line.isascii():
                lines.append(line)
    if len(lines) < 1000:
        raise RuntimeError(f"too little tokenizer corpus found under {stdlib}")
    return lines


def build_sentencepiece(dst: Path, vocab_size: int, work: Path) -> None:
    """Mixtral/Llama style SentencePiece BPE with byte fallback -> tokenizer.model (+ HF files)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "tokenizer"
    cwd = os.getcwd()
    os.chdir(work)  # the model proto records model_prefix: keep it free of temp paths
    try:
        _train_sp(spm, vocab_size)
    finally:
        os.chdir(cwd)
    slow = LlamaTokenizer(vocab_file=str(prefix) + ".model", legacy=False, add_prefix_space=None)
    slow.save_pretrained(str(work / "slow"))
    fast = LlamaTokenizerFast.from_pretrained(str(work / "slow"), from_slow=True, legacy=False)
    fast.save_pretrained(str(dst))
    shutil.copyfile(str(prefix) + ".model", dst / "tokenizer.model")


def _train_sp(spm, vocab_size: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_prefix="tokenizer",
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        max_sentence_length=100000,
        minloglevel=2,
    )


QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_bpe(dst: Path, vocab_size: int, style: str) -> None:
    """Byte-level BPE trained with `tokenizers`; style 'qwen2' (regex split + NFC) or 'olmo' (GPT-NeoX)."""
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if style == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>", "<|padding|>"]
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    tok.add_special_tokens(specials)
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"BPE vocab {tok.get_vocab_size()} != {vocab_size}")
    if style == "qwen2":
        from transformers import Qwen2TokenizerFast
        hf = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                                eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    else:
        from transformers import GPTNeoXTokenizerFast
        hf = GPTNeoXTokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                                  eos_token="<|endoftext|>", pad_token="<|padding|>",
                                  add_bos_token=False, add_eos_token=False)
    hf.save_pretrained(str(dst))


def install_tokenizer(case: dict, dst: Path, cache: Path) -> None:
    kind, vocab = case["tokenizer"], case["vocab_size"]
    src = cache / f"tok-{kind}-{vocab}"
    if not src.exists():
        log(f"  training tokenizer {kind} vocab={vocab}")
        tmp = cache / f"tmp-{kind}-{vocab}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "out").mkdir(parents=True)
        if kind == "sentencepiece":
            build_sentencepiece(tmp / "out", vocab, tmp / "work")
        else:
            build_bpe(tmp / "out", vocab, kind)
        (tmp / "out").rename(src)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in sorted(src.iterdir()):
        shutil.copyfile(f, dst / f.name)
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(str(dst))
    if len(t) != vocab:
        raise RuntimeError(f"tokenizer has {len(t)} tokens, expected {vocab}")


TOKENIZER_SAMPLES = ["def f(x):\n    return x + 1", "Hello, world! 123 tokens", "  indented\tline"]


# ----------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------

CASES: list[dict] = [
    dict(name="mixtral", model_type="mixtral", gguf_arch="llama", pre=None,
         tokenizer="sentencepiece", vocab_size=400, shard="400KB", extra_hf=("hf-bf16", torch.bfloat16, "bf16"),
         config=dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=24, num_local_experts=4, num_experts_per_tok=2,
                     rope_theta=1e6, rms_norm_eps=1e-5, max_position_embeddings=2048, sliding_window=None,
                     tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
    dict(name="qwen2moe", model_type="qwen2_moe", gguf_arch="qwen2moe", pre="qwen2",
         tokenizer="qwen2", vocab_size=352, extra_hf=("hf-f16", torch.float16, "f16"),
         config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
                     num_key_value_heads=2, num_experts=8, num_experts_per_tok=3, moe_intermediate_size=32,
                     shared_expert_intermediate_size=64, norm_topk_prob=False, decoder_sparse_step=1,
                     mlp_only_layers=[], qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6,
                     max_position_embeddings=4096, use_sliding_window=False, tie_word_embeddings=False,
                     bos_token_id=None, eos_token_id=None)),
    dict(name="qwen3moe", model_type="qwen3_moe", gguf_arch="qwen3moe", pre="qwen2",
         tokenizer="qwen2", vocab_size=352,
         config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
                     num_key_value_heads=2, head_dim=24, num_experts=8, num_experts_per_tok=2,
                     moe_intermediate_size=32, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                     attention_bias=False, rope_theta=5e5, rms_norm_eps=1e-6, max_position_embeddings=4096,
                     use_sliding_window=False, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)),
    dict(name="olmoe", model_type="olmoe", gguf_arch="olmoe", pre="olmo",
         tokenizer="olmo", vocab_size=320,
         # llama.cpp's OLMoE graph has attn_k_norm of size n_embd, i.e. no GQA: kv heads == heads.
         # The converter writes rms eps 1e-5 unconditionally for OLMoE, so 1e-5 it is.
         config=dict(hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                     rope_theta=1e4, rms_norm_eps=1e-5, max_position_embeddings=4096, clip_qkv=None,
                     attention_bias=False, tie_word_embeddings=False, pad_token_id=None,
                     bos_token_id=None, eos_token_id=318)),
    dict(name="qwen3moe-dense", model_type="qwen3_moe", gguf_arch=None, pre=None,
         tokenizer="qwen2", vocab_size=352,
         config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
                     num_key_value_heads=2, head_dim=24, num_experts=8, num_experts_per_tok=2,
                     moe_intermediate_size=32, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
                     attention_bias=False, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=4096,
                     use_sliding_window=False, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)),
    dict(name="qwen2moe-sparse-step", model_type="qwen2_moe", gguf_arch=None, pre=None,
         tokenizer="qwen2", vocab_size=352,
         config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                     shared_expert_intermediate_size=64, norm_topk_prob=True, decoder_sparse_step=2,
                     mlp_only_layers=[], qkv_bias=True, rope_theta=1e4, rms_norm_eps=1e-5,
                     max_position_embeddings=4096, use_sliding_window=False, tie_word_embeddings=False,
                     bos_token_id=None, eos_token_id=None)),
]


def make_config(case: dict):
    from transformers import AutoConfig
    cfg = AutoConfig.for_model(case["model_type"], vocab_size=case["vocab_size"], hidden_act="silu",
                               initializer_range=0.02, attention_dropout=0.0, **case["config"])
    cfg.torch_dtype = torch.float32
    cfg._attn_implementation = "eager"
    return cfg


def build_model(cfg):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    return model.eval()


def moe_blocks(model) -> list:
    """Per decoder layer: the sparse MoE block, or None for a dense layer."""
    out = []
    for layer in model.model.layers:
        blk = getattr(layer, "block_sparse_moe", None) or getattr(layer, "mlp", None)
        out.append(blk if (hasattr(blk, "gate") and hasattr(blk, "experts")) else None)
    return out


def randomize(model, seed: int) -> None:
    """Deterministic, non-degenerate random weights (norm gains and biases included)."""
    g = torch.Generator().manual_seed(seed)
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                p.copy_((0.25 if tied else 0.5) * torch.randn(p.shape, generator=g))
            elif name.endswith(".gate.weight") or name.endswith("shared_expert_gate.weight"):
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


# ----------------------------------------------------------------------------
# forward with router capture
# ----------------------------------------------------------------------------

def run_reference(model, seqs: list[list[int]]):
    """Returns (logits list[np.float32 [T,V]], experts [seq][layer][token] | None, min gap)."""
    blocks = moe_blocks(model)
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    for li, blk in enumerate(blocks):
        if blk is None:
            continue
        hooks.append(blk.gate.register_forward_hook(
            lambda mod, inp, out, li=li: captured.__setitem__(li, out.detach().clone())))
    is_mixtral = model.config.model_type == "mixtral"
    all_logits, all_experts, min_gap, ties = [], [], float("inf"), []
    try:
        for si, seq in enumerate(seqs):
            captured.clear()
            with torch.no_grad():
                out = model(input_ids=torch.tensor([seq], dtype=torch.long), use_cache=False)
            all_logits.append(out.logits[0].float().numpy().astype(np.float32))
            layers = []
            for li, blk in enumerate(blocks):
                if blk is None:
                    layers.append(None)
                    continue
                router_logits = captured[li]
                # exactly the rule of the installed modeling file (softmax in float, topk, optional renorm)
                probs = torch.softmax(router_logits, dim=1, dtype=torch.float)
                w, ids = torch.topk(probs, blk.top_k, dim=-1)
                if is_mixtral or blk.norm_topk_prob:
                    w = w / w.sum(dim=-1, keepdim=True)
                w = w.to(router_logits.dtype)
                srt = torch.sort(probs, dim=-1, descending=True).values
                gaps = srt[:, blk.top_k - 1] - srt[:, blk.top_k]
                for ti, gap in enumerate(gaps.tolist()):
                    min_gap = min(min_gap, gap)
                    if gap < NEAR_TIE:
                        ties.append(dict(seq=si, layer=li, token=ti, gap=gap))
                layers.append([{"ids": [int(x) for x in ids[t].tolist()],
                                "weights": [float(x) for x in w[t].tolist()]} for t in range(len(seq))])
            all_experts.append(layers)
    finally:
        for h in hooks:
            h.remove()
    return all_logits, all_experts, min_gap, ties


def expert_id_diffs(ea, eb) -> tuple[int, int]:
    """(number of (seq, layer, token) whose top-k id lists differ, total)."""
    nd = tot = 0
    for sa, sb in zip(ea, eb):
        for la, lb in zip(sa, sb):
            if la is None:
                continue
            for ta, tb in zip(la, lb):
                tot += 1
                nd += ta["ids"] != tb["ids"]
    return nd, tot


def routing_ok(model, experts, min_gap) -> tuple[bool, str]:
    if min_gap < SEED_SEARCH_GAP:
        return False, f"min top-k gap {min_gap:.2e}"
    n_exp = getattr(model.config, "num_local_experts", None) or model.config.num_experts
    for li, blk in enumerate(moe_blocks(model)):
        if blk is None:
            continue
        used, sets = set(), set()
        for seq in experts:
            for tok in seq[li]:
                used.update(tok["ids"])
                sets.add(tuple(sorted(tok["ids"])))
        if len(used) < n_exp:
            return False, f"layer {li} uses only {len(used)}/{n_exp} experts"
        if len(sets) < 3:
            return False, f"layer {li} has only {len(sets)} distinct expert sets"
    return True, f"min gap {min_gap:.3e}"


# ----------------------------------------------------------------------------
# GGUF -> HF state dict
# ----------------------------------------------------------------------------

def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp LlamaModel.permute (rows grouped per head: (2, hd/2) -> (hd/2, 2))."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def gguf_to_state_dict(path: Path, model, case: dict) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(str(path))
    cfg = model.config
    mixtral = case["model_type"] == "mixtral"
    tensors, info = {}, {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = arr
        info[t.name] = {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape]}

    sd_keys = list(model.state_dict().keys())
    out: dict[str, torch.Tensor] = {}
    used = set()

    def take(gname: str) -> np.ndarray:
        used.add(gname)
        return tensors[gname]

    moe = "block_sparse_moe" if mixtral else "mlp"
    exp_names = {"w1": "gate", "w3": "up", "w2": "down"} if mixtral else \
        {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
    attn = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
            "q_norm": "attn_q_norm", "k_norm": "attn_k_norm"}
    for key in sd_keys:
        parts = key.split(".")
        if key == "model.embed_tokens.weight":
            arr = take("token_embd.weight")
        elif key == "model.norm.weight":
            arr = take("output_norm.weight")
        elif key == "lm_head.weight":
            arr = take("token_embd.weight") if cfg.tie_word_embeddings else take("output.weight")
        else:
            assert parts[0] == "model" and parts[1] == "layers", key
            b = int(parts[2])
            rest = parts[3:]
            if rest == ["input_layernorm", "weight"]:
                arr = take(f"blk.{b}.attn_norm.weight")
            elif rest == ["post_attention_layernorm", "weight"]:
                arr = take(f"blk.{b}.ffn_norm.weight")
            elif rest[0] == "self_attn":
                arr = take(f"blk.{b}.{attn[rest[1]]}.{rest[2]}")
                if mixtral and rest[1] in ("q_proj", "k_proj"):
                    n = cfg.num_attention_heads if rest[1] == "q_proj" else cfg.num_key_value_heads
                    arr = unpermute(arr, n)
            elif rest[0] == moe and rest[1] == "gate":
                arr = take(f"blk.{b}.ffn_gate_inp.weight")
            elif rest[0] == moe and rest[1] == "experts":
                e, w = int(rest[2]), rest[3]
                arr = take(f"blk.{b}.ffn_{exp_names[w]}_exps.weight")[e]
            elif rest[0] == "mlp" and rest[1] == "shared_expert_gate":
                arr = take(f"blk.{b}.ffn_gate_inp_shexp.weight")
            elif rest[0] == "mlp" and rest[1] == "shared_expert":
                arr = take(f"blk.{b}.ffn_{rest[2].split('_')[0]}_shexp.weight")
            else:
                raise KeyError(f"no GGUF mapping for {key}")
        out[key] = torch.from_numpy(np.ascontiguousarray(arr).reshape(model.state_dict()[key].shape).copy())
    unused = set(tensors) - used
    if unused:
        raise RuntimeError(f"GGUF tensors not mapped back: {sorted(unused)}")
    return out, info


def gguf_metadata(path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    meta = {}
    for f in reader.fields.values():
        if f.name.startswith("tokenizer.ggml.") and f.name not in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            meta[f.name] = f"<{len(f.data)} items>" if f.types and f.types[0] == gguf.GGUFValueType.ARRAY \
                else f.contents()
            continue
        try:
            meta[f.name] = f.contents()
        except Exception:  # pragma: no cover
            meta[f.name] = "<unreadable>"
    return meta


# ----------------------------------------------------------------------------
# per case
# ----------------------------------------------------------------------------

def run_converter(converter: Path, hf_dir: Path, outfile: Path, outtype: str, pre: str | None, logf: Path,
                  model_name: str) -> None:
    env = dict(os.environ)
    gguf_py = converter.parent / "gguf-py"
    env["PYTHONPATH"] = os.pathsep.join([str(gguf_py), str(converter.parent)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_convert-wrapper", pre or "default", str(converter),
           str(hf_dir), "--outfile", str(outfile), "--outtype", outtype, "--model-name", model_name]
    with open(logf, "a") as lf:
        lf.write(f"$ {' '.join(cmd)}\n")
        lf.flush()
        r = subprocess.run(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"converter failed for {outfile.name} (see {logf})")


def check_per_expert_layout(hf_dir: Path, case: dict) -> None:
    keys = []
    for f in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            keys += list(sf.keys())
    want = ("model.layers.0.block_sparse_moe.experts.0.w1.weight" if case["model_type"] == "mixtral"
            else None)
    exp_keys = [k for k in keys if ".experts." in k]
    if not exp_keys or any(k.split(".experts.")[1].split(".")[0].isdigit() is False for k in exp_keys):
        raise RuntimeError(f"{hf_dir}: experts are not saved one by one: {exp_keys[:4]}")
    if want and want not in keys:
        raise RuntimeError(f"{hf_dir}: missing {want}")


def build_case(case: dict, out_root: Path, converter: Path | None, cache: Path) -> dict:
    name = case["name"]
    cdir = out_root / name
    log(f"== {name}")
    shutil.rmtree(cdir, ignore_errors=True)
    (cdir / "hf").mkdir(parents=True)
    (cdir / "ref").mkdir()
    install_tokenizer(case, cdir / "hf", cache)

    vocab = case["vocab_size"]
    base_seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    rs = np.random.RandomState(base_seed)
    seqs = [[int(x) for x in rs.randint(0, vocab, size=n)] for n in SEQ_LENGTHS]

    cfg = make_config(case)
    model = None
    for attempt in range(MAX_SEED_TRIES):
        seed = base_seed + attempt
        torch.manual_seed(seed)
        model = build_model(cfg)
        randomize(model, seed)
        _, experts, min_gap, _ = run_reference(model, seqs)
        ok, why = routing_ok(model, experts, min_gap)
        log(f"  seed {seed}: {'ok' if ok else 'rejected'} ({why})")
        if ok:
            break
    else:
        raise RuntimeError(f"{name}: no seed with clean routing in {MAX_SEED_TRIES} tries")

    # ---- HF checkpoint(s)
    save_kw = dict(safe_serialization=True)
    if case.get("shard"):
        save_kw["max_shard_size"] = case["shard"]
    model.save_pretrained(str(cdir / "hf"), **save_kw)
    check_per_expert_layout(cdir / "hf", case)
    if case.get("shard"):
        n_shards = len(list((cdir / "hf").glob("model-*-of-*.safetensors")))
        assert n_shards >= 2 and (cdir / "hf" / "model.safetensors.index.json").is_file(), n_shards
        log(f"  hf: {n_shards} shards")

    models = [{"path": "hf", "format": "hf", "dtype": "f32", "reference": "f32"}]
    refs: dict[str, tuple] = {}
    f32_model = build_model(cfg)
    f32_model.load_state_dict(load_hf_weights(cdir / "hf", f32_model), strict=True)
    refs["f32"] = run_reference(f32_model, seqs)

    if case.get("extra_hf"):
        sub, dtype, tag = case["extra_hf"]
        half = build_model(cfg)
        half.load_state_dict(model.state_dict())
        half = half.to(dtype)
        half.save_pretrained(str(cdir / sub), **save_kw)
        for f in (cdir / "hf").iterdir():
            if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
                shutil.copyfile(f, cdir / sub / f.name)
        del half
        m = build_model(cfg)
        m.load_state_dict(load_hf_weights(cdir / sub, m, expect_dtype=dtype), strict=True)
        refs[sub] = run_reference(m, seqs)
        models.append({"path": sub, "format": "hf", "dtype": tag, "reference": sub})

    gguf_info, gguf_meta = {}, {}
    sanity = {}
    if case["gguf_arch"]:
        if converter is None:
            raise RuntimeError("converter not found; pass --converter or set LLAMA_CPP_CONVERTER")
        logf = cache / f"convert-{name}.log"
        logf.write_text("")
        for outtype in ("f32", "f16", "q8_0"):
            fn = f"model-{outtype}.gguf"
            log(f"  converting -> {fn}")
            run_converter(converter, cdir / "hf", cdir / fn, outtype, case["pre"], logf, f"tiny-{name}")
            sd, info = gguf_to_state_dict(cdir / fn, f32_model, case)
            gguf_info[fn] = info
            gguf_meta[fn] = gguf_metadata(cdir / fn)
            arch = gguf_meta[fn].get("general.architecture")
            if arch != case["gguf_arch"]:
                raise RuntimeError(f"{fn}: architecture {arch!r}, expected {case['gguf_arch']!r}")
            m = build_model(cfg)
            m.load_state_dict(sd, strict=True)
            r = run_reference(m, seqs)
            if outtype == "f32":
                d = max(float(np.abs(a - b).max()) for a, b in zip(r[0], refs["f32"][0]))
                wd = max(float((sd[k] - f32_model.state_dict()[k]).abs().max()) for k in sd)
                same = r[1] == refs["f32"][1]
                sanity = {"gguf-f32_logits_max_abs_vs_f32": d, "gguf-f32_weights_max_abs_vs_f32": wd,
                          "gguf-f32_same_experts": same}
                log(f"  sanity gguf-f32 vs f32: weights {wd:.3g}, logits {d:.3g}, experts identical {same}")
                if wd != 0.0 or d > 1e-6 or not same:
                    raise RuntimeError("gguf-f32 round trip does not reproduce the f32 model")
                refs["gguf-f32"] = r
                models.append({"path": fn, "format": "gguf", "dtype": "f32", "reference": "f32"})
            else:
                refs[f"gguf-{outtype}"] = r
                models.append({"path": fn, "format": "gguf", "dtype": outtype, "reference": f"gguf-{outtype}"})

    # ---- write references (gguf-f32 is only a sanity check; its reference is "f32")
    references, max_abs, near_ties = {}, {}, {}
    for rname, (logits, experts, min_gap, ties) in refs.items():
        if rname == "gguf-f32":
            continue
        files = []
        for i, lg in enumerate(logits):
            assert lg.shape == (len(seqs[i]), vocab) and lg.dtype == np.float32
            fn = f"ref/{rname}-seq{i}.npy"
            np.save(cdir / fn, np.ascontiguousarray(lg), allow_pickle=False)
            files.append(fn)
        (cdir / f"ref/{rname}-experts.json").write_text(json.dumps(experts, separators=(",", ":")) + "\n")
        references[rname] = {"logits": files, "experts": f"ref/{rname}-experts.json",
                             "min_topk_gap": min_gap}
        if ties:
            near_ties[rname] = ties
        if rname != "f32":
            max_abs[rname] = max(float(np.abs(a - b).max()) for a, b in zip(logits, refs["f32"][0]))

    # pairwise summary
    names = list(refs)
    log(f"  max |logits| difference between references ({name}):")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = max(float(np.abs(x - y).max()) for x, y in zip(refs[a][0], refs[b][0]))
            nd, tot = expert_id_diffs(refs[a][1], refs[b][1])
            log(f"    {a:>10} vs {b:<10} {d:.3e}   expert choices differing: {nd}/{tot}")
    if near_ties:
        log(f"  WARNING near ties (gap < {NEAR_TIE}): {near_ties}")

    c = case["config"]
    tok = transformers.AutoTokenizer.from_pretrained(str(cdir / "hf"))
    samples = [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in TOKENIZER_SAMPLES]
    manifest = {
        "case": name,
        "hf_model_type": case["model_type"],
        "gguf_arch": case["gguf_arch"],
        "sequences": seqs,
        "models": models,
        "references": references,
        "max_abs_vs_f32": max_abs,
        "config_summary": {
            "layers": c["num_hidden_layers"],
            "experts": c.get("num_local_experts", c.get("num_experts")),
            "top_k": c["num_experts_per_tok"],
            "norm_topk_prob": True if case["model_type"] == "mixtral" else c["norm_topk_prob"],
            "head_dim": c.get("head_dim", c["hidden_size"] // c["num_attention_heads"]),
            "heads": c["num_attention_heads"],
            "kv_heads": c["num_key_value_heads"],
            "tied": c["tie_word_embeddings"],
            "hidden": c["hidden_size"],
            "vocab": vocab,
            "expert_intermediate": c.get("moe_intermediate_size", c["intermediate_size"]),
            "dense_intermediate": c["intermediate_size"] if case["model_type"] != "mixtral" else None,
            "shared_expert_intermediate": c.get("shared_expert_intermediate_size"),
            "dense_layers": [i for i, b in enumerate(moe_blocks(f32_model)) if b is None],
            "rope_theta": c["rope_theta"],
            "rms_norm_eps": c["rms_norm_eps"],
        },
        "seed": seed,
        "near_ties": near_ties,
        "sanity": sanity,
        "tokenizer": {"kind": case["tokenizer"], "pre": case["pre"],
                      "samples_hf_fast_no_special_tokens": samples},
        "gguf_tensors": gguf_info,
        "gguf_metadata": {k: v for k, v in gguf_meta.get("model-f32.gguf", {}).items()
                          if not k.startswith("tokenizer.ggml.") or k in ("tokenizer.ggml.model",
                                                                           "tokenizer.ggml.pre")},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "gguf": _gguf_version(), "llama_cpp_converter": CONVERTER_VERSION,
                     "python": sys.version.split()[0]},
    }
    (cdir / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default) + "\n")
    return manifest


def _gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def load_hf_weights(hf_dir: Path, model, expect_dtype=torch.float32) -> dict:
    """Read safetensors (sharded or not) and upcast to float32; tied lm_head is filled from the embedding."""
    sd = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                t = sf.get_tensor(k)
                if t.dtype != expect_dtype:
                    raise RuntimeError(f"{f.name}:{k} has dtype {t.dtype}, expected {expect_dtype}")
                sd[k] = t.to(torch.float32)
    if model.config.tie_word_embeddings and "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing = set(model.state_dict()) - set(sd)
    extra = set(sd) - set(model.state_dict())
    if missing or extra:
        raise RuntimeError(f"{hf_dir}: missing {sorted(missing)} extra {sorted(extra)}")
    return sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--converter", default=os.environ.get("LLAMA_CPP_CONVERTER", DEFAULT_CONVERTER))
    ap.add_argument("--out", default=str(REPO / "Tests" / "Fixtures"))
    ap.add_argument("--cases", default=None)
    ap.add_argument("--cache", default=None, help="scratch dir (default: a temp dir, removed afterwards)")
    args = ap.parse_args()

    converter = Path(args.converter)
    if not converter.is_file():
        log(f"warning: converter not found at {converter}; GGUF cases will fail")
        converter = None
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    wanted = set(args.cases.split(",")) if args.cases else None

    import tempfile
    tmp = None
    if args.cache:
        cache = Path(args.cache)
        cache.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="moe-fixtures-")
        cache = Path(tmp.name)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, gguf {_gguf_version()}, "
        f"converter {converter}")
    summary = {}
    for case in CASES:
        if wanted and case["name"] not in wanted:
            continue
        m = build_case(case, out_root, converter, cache)
        summary[case["name"]] = m["max_abs_vs_f32"]
    log("== summary: max |logits - f32 logits|")
    for n, d in summary.items():
        log(f"  {n:22} " + ", ".join(f"{k}={v:.3e}" for k, v in d.items()))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
