#!/usr/bin/env python3
"""Train SwiftMoE's demo model: a small Qwen3-MoE on Python's docs and stdlib sources.

Stages (run all with ``all``, or one at a time; each stage reuses the previous stage's
outputs under --work):

  corpus     collect documents from Debian packages, split 95/5 by document (hash of the
             path), write train/validation texts and Models/demo/validation.txt
  tokenizer  train a Qwen2-style byte-level BPE (``tokenizers``) on the training split
  train      train Qwen3MoeForCausalLM with transformers (router aux loss on), CPU (--threads, default 1),
             fixed seed; logs loss and tokens/s, checkpoints every --ckpt-every steps and
             resumes from the last checkpoint when rerun
  export     HF directory (f32 safetensors + tokenizer), GGUF F16 and Q8_0 with llama.cpp's
             converter (through tools/make_fixtures.py's pre-tokenizer wrapper), and
             Models/demo/demo.moe with ``swift run -c release moe convert --bits keep`` from
             the Q8_0 GGUF
  eval       transformers on the HF export: validation perplexity (two methods), unigram
             baseline, per-layer expert frequencies, layer l -> l+1 expert predictability,
             greedy samples; writes <work>/eval.json and Models/demo/eval.json
  check      ``moe logits --kernels reference --kv-cache f32`` vs transformers on the HF export
             and on demo.moe (vs the Q8_0 GGUF's dequantized weights); writes check.json

Corpus (Debian bookworm packages, see docs/demo-model.md for licences):
  * python3.11-doc:  /usr/share/doc/python3.11/html/_sources/**/*.rst.txt  (English prose)
  * libpython3.11-stdlib / -minimal: /usr/lib/python3.11/**/*.py, tests excluded (code)

Usage:
  apt-get install -y python3.11-doc
  pip install -r tools/requirements-demo.txt
  python3 tools/train_demo.py all [--work /work/demo-build]

Deterministic as far as torch allows on CPU: fixed seeds, a fixed data order derived from the
step number (so a resumed run sees the same batches) and a fixed thread count (--threads, 1). Results still depend on the torch build and CPU (BLAS kernels).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "Models" / "demo"
DEFAULT_WORK = Path("/work/demo-build")
DEFAULT_CONVERTER = "/opt/moe-cache/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py"

DOC_ROOT = Path("/usr/share/doc/python3.11/html/_sources")
CODE_ROOT = Path("/usr/lib/python3.11")
CODE_EXCLUDE_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
MAX_DOC_BYTES = 400_000           # skip giant files (none in practice except generated tables)
VALIDATION_FRACTION = 0.05        # by document, from a hash of the relative path
VALIDATION_MAX_BYTES = 295_000    # Models/demo/validation.txt stays under 300 KB
DOC_SEPARATOR = "<|endoftext|>"  # between documents, in training data and validation.txt

VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

MODEL_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=256,
    intermediate_size=768,          # dense FFN size: unused (no dense layers)
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    hidden_act="silu",
    max_position_embeddings=1024,
    initializer_range=0.02,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    rope_theta=10000.0,
    attention_bias=False,
    attention_dropout=0.0,
    decoder_sparse_step=1,
    moe_intermediate_size=256,
    num_experts_per_tok=2,
    num_experts=16,
    norm_topk_prob=True,
    output_router_logits=True,
    router_aux_loss_coef=0.01,
    mlp_only_layers=[],
    bos_token_id=None,
    eos_token_id=0,                 # <|endoftext|> is id 0 (first special token added)
    pad_token_id=0,
)

TRAIN = dict(
    seed=1234,
    threads=1,                      # see --threads: 2 threads ran 4x slower here with other work on the 2 cores
    seq_len=512,
    batch_size=8,                   # 4096 tokens per step
    steps=1200,                     # 4.9M tokens, 83% of the training split
    lr=2e-3,
    min_lr_ratio=0.1,
    warmup=30,
    weight_decay=0.1,
    betas=(0.9, 0.95),
    grad_clip=1.0,
)

SAMPLE_PROMPTS = [
    "The following example shows how to",
    "def read_config(path):\n",
    "This module provides",
    "import os\nimport sys\n\n",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def stable_hash(s: str) -> int:
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big")


# ----------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------

def collect_documents() -> list[dict]:
    if not DOC_ROOT.is_dir():
        raise SystemExit(f"{DOC_ROOT} missing: apt-get install -y python3.11-doc")
    if not (CODE_ROOT / "os.py").is_file():
        raise SystemExit(f"{CODE_ROOT} missing: apt-get install -y libpython3.11-stdlib")
    docs = []
    for kind, root, pattern in (("prose", DOC_ROOT, "*.rst.txt"), ("code", CODE_ROOT, "*.py")):
        for p in sorted(root.rglob(pattern)):
            rel = p.relative_to(root)
            if kind == "code" and any(part in CODE_EXCLUDE_DIRS for part in rel.parts[:-1]):
                continue
            if not p.is_file() or p.stat().st_size > MAX_DOC_BYTES:
                continue
            text = p.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
            text = text.replace(DOC_SEPARATOR, "")
            if len(text.strip()) < 200:
                continue
            docs.append(dict(kind=kind, name=f"{kind}:{rel.as_posix()}", text=text))
    return docs


def stage_corpus(args) -> None:
    work = args.work
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    docs = collect_documents()
    train, val = [], []
    for d in docs:
        h = stable_hash(d["name"])
        (val if (h % 10_000) < VALIDATION_FRACTION * 10_000 else train).append(d)
    # validation.txt: a deterministic subset of the held-out documents, whole documents in hash
    # order, taking next from whichever kind (prose/code) has fewer bytes so far, skipping
    # documents that would push it past VALIDATION_MAX_BYTES.
    queues = {k: sorted([d for d in val if d["kind"] == k], key=lambda d: stable_hash("v" + d["name"]))
              for k in ("prose", "code")}
    chosen, size, kind_bytes = [], 0, {"prose": 0, "code": 0}
    while any(queues.values()):
        kind = min((k for k in queues if queues[k]), key=lambda k: (kind_bytes[k], k))
        d = queues[kind].pop(0)
        n = len(d["text"].encode()) + len(DOC_SEPARATOR)
        if size + n > VALIDATION_MAX_BYTES:
            continue
        chosen.append(d)
        size += n
        kind_bytes[kind] += n
    val_text = DOC_SEPARATOR.join(d["text"] for d in chosen)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    (DEMO_DIR / "validation.txt").write_text(val_text, encoding="utf-8")
    (work / "corpus" / "validation-full.txt").write_text(DOC_SEPARATOR.join(d["text"] for d in val), encoding="utf-8")
    with open(work / "corpus" / "train.jsonl", "w", encoding="utf-8") as f:
        for d in train:
            f.write(json.dumps(dict(name=d["name"], kind=d["kind"], text=d["text"])) + "\n")
    def stats(ds):
        out = {}
        for k in ("prose", "code"):
            sel = [d for d in ds if d["kind"] == k]
            out[k] = dict(documents=len(sel), bytes=sum(len(d["text"].encode()) for d in sel))
        return out
    summary = dict(train=stats(train), validation_heldout=stats(val), validation_txt=stats(chosen),
                   validation_txt_documents=[d["name"] for d in chosen],
                   validation_txt_bytes=len(val_text.encode()))
    (work / "corpus" / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"corpus: train {summary['train']}, held out {summary['validation_heldout']}, "
        f"validation.txt {summary['validation_txt']} ({summary['validation_txt_bytes']} bytes)")


def train_docs(work: Path) -> list[dict]:
    with open(work / "corpus" / "train.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------

def stage_tokenizer(args) -> None:
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors
    from transformers import Qwen2TokenizerFast

    dst = args.work / "tokenizer"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS,   # ids 0, 1, 2
    )
    t0 = time.time()
    tok.train_from_iterator((d["text"] for d in train_docs(args.work)), trainer=trainer)
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"BPE vocab {tok.get_vocab_size()} != {VOCAB_SIZE}")
    hf = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                            eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.save_pretrained(str(dst))
    assert hf.convert_tokens_to_ids("<|endoftext|>") == MODEL_CONFIG["eos_token_id"]
    log(f"tokenizer: vocab {VOCAB_SIZE} trained in {time.time() - t0:.1f}s -> {dst}")


def load_tokenizer(work: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(work / "tokenizer"))


def tokenize_train(work: Path):
    import numpy as np
    cache = work / "tokens-train.npy"
    if cache.exists():
        return np.load(cache)
    tok = load_tokenizer(work)
    eos = MODEL_CONFIG["eos_token_id"]
    out = []
    t0 = time.time()
    for d in train_docs(work):
        out.extend(tok(d["text"], add_special_tokens=False)["input_ids"])
        out.append(eos)
    arr = np.asarray(out, dtype=np.uint16)
    np.save(cache, arr)
    log(f"tokenized training split: {len(arr)} tokens in {time.time() - t0:.1f}s")
    return arr


def tokenize_validation(work: Path) -> list[int]:
    tok = load_tokenizer(work)
    text = (DEMO_DIR / "validation.txt").read_text(encoding="utf-8")
    return tok(text, add_special_tokens=True)["input_ids"]   # the separator becomes id 0


# ----------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------

def make_config():
    import torch
    from transformers import Qwen3MoeConfig
    cfg = Qwen3MoeConfig(**MODEL_CONFIG)
    cfg.torch_dtype = torch.float32
    return cfg


def set_determinism(seed: int, threads: int) -> None:
    import random
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    # torch.use_deterministic_algorithms(True) is not used: it makes this model's training step
    # ~10x slower on CPU. The CPU kernels used here are run-to-run deterministic for a fixed
    # thread count anyway.


def lr_at(step: int) -> float:
    t = TRAIN
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    p = (step - t["warmup"]) / max(1, t["steps"] - t["warmup"])
    return t["lr"] * (t["min_lr_ratio"] + (1 - t["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def batch_for_step(tokens, step: int):
    """Non-overlapping (seq_len+1)-token chunks, shuffled per epoch with a seeded permutation."""
    import numpy as np
    import torch
    n = TRAIN["seq_len"] + 1
    n_chunks = (len(tokens) - 1) // TRAIN["seq_len"]
    per_epoch = n_chunks // TRAIN["batch_size"]
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng(TRAIN["seed"] + epoch).permutation(n_chunks)
    idx = perm[i * TRAIN["batch_size"]:(i + 1) * TRAIN["batch_size"]]
    rows = [tokens[j * TRAIN["seq_len"]: j * TRAIN["seq_len"] + n].astype(np.int64) for j in idx]
    x = torch.from_numpy(np.stack(rows))
    return x, epoch


def quick_val_loss(model, val_ids: list[int], windows: int = 24, ctx: int = 256) -> float:
    import torch
    model.eval()
    tot, cnt = 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            seg = val_ids[w * ctx:(w + 1) * ctx]
            if len(seg) < 2:
                break
            x = torch.tensor([seg])
            out = model(input_ids=x, labels=x, output_router_logits=False)
            tot += out.loss.item() * (len(seg) - 1)
            cnt += len(seg) - 1
    model.train()
    return tot / max(1, cnt)


def stage_train(args) -> None:
    import torch
    from transformers import Qwen3MoeForCausalLM
    import transformers
    transformers.logging.set_verbosity_error()

    work = args.work
    set_determinism(TRAIN["seed"], args.threads)
    tokens = tokenize_train(work)
    val_ids = tokenize_validation(work)
    cfg = make_config()
    model = Qwen3MoeForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=TRAIN["weight_decay"]),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=TRAIN["lr"], betas=TRAIN["betas"], eps=1e-8)
    ckpt = work / "ckpt.pt"
    step, elapsed = 0, 0.0
    history = []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        log(f"resumed from {ckpt} at step {step} ({elapsed / 60:.1f} min trained)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters; training tokens {len(tokens)}; "
        f"{TRAIN['steps']} steps x {TRAIN['batch_size']}x{TRAIN['seq_len']} tokens")

    def save():
        tmp = ckpt.with_suffix(".tmp")
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step, elapsed=elapsed,
                        history=history, train=TRAIN, config=MODEL_CONFIG), tmp)
        os.replace(tmp, ckpt)

    model.train()
    t_last, tok_since = time.time(), 0
    while step < TRAIN["steps"]:
        t0 = time.time()
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        x, epoch = batch_for_step(tokens, step)
        out = model(input_ids=x, labels=x, output_router_logits=True)
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"]).item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        elapsed += time.time() - t0
        tok_since += x.numel()
        lm = out.loss.item() - cfg.router_aux_loss_coef * out.aux_loss.item()
        if step % args.log_every == 0 or step == TRAIN["steps"]:
            now = time.time()
            rate = tok_since / (now - t_last)
            t_last, tok_since = now, 0
            rec = dict(step=step, epoch=epoch, lm_loss=round(lm, 4), aux_loss=round(out.aux_loss.item(), 4),
                       lr=lr, grad_norm=round(gnorm, 3), tok_per_s=round(rate), minutes=round(elapsed / 60, 2))
            if step % args.eval_every == 0 or step == TRAIN["steps"]:
                rec["val_loss_quick"] = round(quick_val_loss(model, val_ids), 4)
            history.append(rec)
            log(json.dumps(rec))
        if step % args.ckpt_every == 0 or step == TRAIN["steps"]:
            save()
    # final weights
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    # output_router_logits is a training setting (passed explicitly above); saved as false so that
    # generate() on the export works (transformers' aux loss breaks with a KV cache)
    model.config.output_router_logits = False
    model.save_pretrained(str(final), safe_serialization=True)
    (work / "train-log.json").write_text(json.dumps(dict(train=TRAIN, minutes=elapsed / 60,
                                                         parameters=n_params, tokens_seen=TRAIN["steps"] *
                                                         TRAIN["batch_size"] * TRAIN["seq_len"],
                                                         train_tokens=int(len(tokens)), history=history), indent=1))
    log(f"training done: {elapsed / 60:.1f} min")


# ----------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------

def stage_export(args) -> None:
    work = args.work
    hf = work / "hf"
    shutil.rmtree(hf, ignore_errors=True)
    shutil.copytree(work / "final", hf)
    for f in (work / "tokenizer").iterdir():
        shutil.copyfile(f, hf / f.name)
    converter = Path(args.converter)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(converter.parent / "gguf-py"), str(converter.parent)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for outtype in ("f16", "q8_0"):
        out = work / f"demo-{outtype}.gguf"
        cmd = [sys.executable, str(REPO / "tools" / "make_fixtures.py"), "--_convert-wrapper", "qwen2",
               str(converter), str(hf), "--outfile", str(out), "--outtype", outtype,
               "--model-name", "SwiftMoE demo"]
        log("$ " + " ".join(cmd))
        with open(work / "convert.log", "a") as lf:
            subprocess.run(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT, check=True)
        log(f"  {out} {out.stat().st_size} bytes")
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    store = DEMO_DIR / "demo.moe"
    cmd = ["swift", "run", "-c", "release", "moe", "convert", str(work / "demo-q8_0.gguf"),
           "-o", str(store), "--bits", "keep"]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=REPO, check=True)
    log(f"  {store} {store.stat().st_size} bytes")


# ----------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------

def run_windows(model, ids: list[int], ctx: int, stride: int | None = None):
    """Yield (window ids, logits, router logits per layer) for non-overlapping windows."""
    import torch
    stride = stride or ctx
    with torch.no_grad():
        for s in range(0, len(ids) - 1, stride):
            seg = ids[s:s + ctx]
            if len(seg) < 2:
                break
            out = model(input_ids=torch.tensor([seg]), output_router_logits=True)
            yield seg, out.logits[0], [r for r in out.router_logits]


def stage_eval(args) -> None:
    import numpy as np
    import torch
    from transformers import Qwen3MoeForCausalLM
    import transformers
    transformers.logging.set_verbosity_error()
    set_determinism(TRAIN["seed"], args.threads)
    work = args.work
    model = Qwen3MoeForCausalLM.from_pretrained(str(work / "hf"), dtype=torch.float32,
                                                attn_implementation="eager").eval()
    tok = load_tokenizer(work)
    L, E, K = MODEL_CONFIG["num_hidden_layers"], MODEL_CONFIG["num_experts"], MODEL_CONFIG["num_experts_per_tok"]
    val_ids = tokenize_validation(work)
    train_tokens = tokenize_train(work)
    res: dict = dict(validation_tokens=len(val_ids),
                     validation_bytes=len((DEMO_DIR / "validation.txt").read_bytes()))

    # unigram baseline: training-split frequencies, add-one smoothing
    counts = np.bincount(train_tokens.astype(np.int64), minlength=VOCAB_SIZE).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    res["unigram_nll"] = float(-logp[np.asarray(val_ids[1:])].mean())

    # (a) non-overlapping 256-token windows, every prediction inside a window scored (255/window)
    ctx = 256
    nll, cnt = 0.0, 0
    val_experts = [[] for _ in range(L)]     # per layer: [tokens, K] expert ids over validation
    freq = np.zeros((L, E), dtype=np.int64)
    prob_sum = np.zeros((L, E))               # router softmax summed over validation tokens
    slot_freq = np.zeros((L, K, E))           # one-hot of the i-th choice, as in load_balancing_loss_func
    for seg, logits, routers in run_windows(model, val_ids, ctx):
        lp = torch.log_softmax(logits.float(), dim=-1)
        tgt = torch.tensor(seg[1:])
        nll += -lp[:-1].gather(1, tgt[:, None]).sum().item()
        cnt += len(seg) - 1
        for l, r in enumerate(routers):
            probs = torch.softmax(r.float(), dim=-1)
            top = torch.topk(probs, K, dim=-1).indices.numpy()
            val_experts[l].append(top)
            np.add.at(freq[l], top.reshape(-1), 1)
            prob_sum[l] += probs.sum(0).numpy()
            for i in range(K):
                np.add.at(slot_freq[l, i], top[:, i], 1)
    res["ppl_windows256"] = dict(method="non-overlapping 256-token windows, all 255 next-token predictions "
                                        "of each window scored", tokens_scored=cnt, nll=nll / cnt,
                                 ppl=math.exp(nll / cnt))
    # (b) llama-perplexity style: windows of n_ctx=256, score the second half
    nll2, cnt2 = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(val_ids) - ctx + 1, ctx):
            seg = val_ids[s:s + ctx]
            lp = torch.log_softmax(model(input_ids=torch.tensor([seg])).logits[0].float(), dim=-1)
            first = ctx // 2
            tgt = torch.tensor(seg[first + 1:])
            nll2 += -lp[first:-1].gather(1, tgt[:, None]).sum().item()
            cnt2 += len(tgt)
    res["ppl_llama_style"] = dict(method="llama-perplexity method: non-overlapping windows of n_ctx=256, "
                                         "last 127 predictions (second half) of each scored",
                                  tokens_scored=cnt2, nll=nll2 / cnt2, ppl=math.exp(nll2 / cnt2))
    res["unigram_ppl"] = math.exp(res["unigram_nll"])

    # per kind (prose/code): each validation.txt document on its own, non-overlapping 256-token windows
    names = json.loads((work / "corpus" / "summary.json").read_text())["validation_txt_documents"]
    texts = (DEMO_DIR / "validation.txt").read_text(encoding="utf-8").split(DOC_SEPARATOR)
    assert len(names) == len(texts)
    per_kind: dict = {}
    for name, text in zip(names, texts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        k = name.split(":")[0]
        acc = per_kind.setdefault(k, dict(nll=0.0, tokens_scored=0, documents=0))
        acc["documents"] += 1
        for seg, logits, _r in run_windows(model, ids, ctx):
            lp = torch.log_softmax(logits.float(), dim=-1)
            acc["nll"] += -lp[:-1].gather(1, torch.tensor(seg[1:])[:, None]).sum().item()
            acc["tokens_scored"] += len(seg) - 1
    for k, acc in per_kind.items():
        acc["nll"] /= acc["tokens_scored"]
        acc["ppl"] = math.exp(acc["nll"])
    res["ppl_by_kind"] = per_kind

    # expert activation frequency on validation (fraction of token-slots per expert)
    tot = freq.sum(axis=1, keepdims=True)
    share = freq / tot
    res["expert_share"] = share.round(5).tolist()
    res["expert_balance"] = [dict(layer=l, max_share=float(share[l].max()), min_share=float(share[l].min()),
                                  max_over_uniform=float(share[l].max() * E),
                                  min_over_uniform=float(share[l].min() * E),
                                  norm_entropy=float(-(share[l] * np.log(share[l] + 1e-12)).sum() / math.log(E)))
                             for l in range(L)]
    val_top = [np.concatenate(v) for v in val_experts]
    # transformers' load_balancing_loss_func concatenates all layers' router logits before averaging,
    # so it balances expert *index* e pooled over layers; per layer it can stay unbalanced. Both:
    n_tok = freq[0].sum() / K
    per_layer = [float(E * ((slot_freq[l] / n_tok) * (prob_sum[l] / n_tok)[None, :]).sum()) for l in range(L)]
    pooled = float(E * ((slot_freq.sum(0) / (n_tok * L)) * (prob_sum.sum(0) / (n_tok * L))[None, :]).sum())
    res["aux_loss_validation"] = dict(pooled_as_transformers=pooled, per_layer=per_layer, balanced_value=float(K))

    # layer l -> l+1 predictability, tables estimated on a training sample
    sample_tokens = min(len(train_tokens), args.pred_train_tokens)
    train_top = [[] for _ in range(L)]
    for seg, _logits, routers in run_windows(model, train_tokens[:sample_tokens].astype(np.int64).tolist(), ctx):
        for l, r in enumerate(routers):
            train_top[l].append(torch.topk(torch.softmax(r.float(), dim=-1), K, dim=-1).indices.numpy())
    train_top = [np.concatenate(v) for v in train_top]
    pred = []
    for l in range(L - 1):
        a_tr, b_tr = train_top[l], train_top[l + 1]
        single = np.zeros((E, E))                 # single[a, b]: tokens with a in top-k(l), b in top-k(l+1)
        for i in range(K):
            for j in range(K):
                np.add.at(single, (a_tr[:, i], b_tr[:, j]), 1)
        pair: dict = {}
        for a, b in zip(a_tr, b_tr):
            key = tuple(sorted(a.tolist()))
            row = pair.setdefault(key, np.zeros(E))
            row[b] += 1
        marg = np.bincount(b_tr.reshape(-1), minlength=E)
        freq_pred = set(np.argsort(-marg, kind="stable")[:K].tolist())
        a_va, b_va = val_top[l], val_top[l + 1]
        rec_single = rec_pair = rec_freq = 0.0
        exact_pair = 0
        for a, b in zip(a_va, b_va):
            actual = set(b.tolist())
            ps = set(np.argsort(-single[a].sum(axis=0), kind="stable")[:K].tolist())
            key = tuple(sorted(a.tolist()))
            row = pair.get(key)
            pp = set(np.argsort(-row, kind="stable")[:K].tolist()) if row is not None and row.sum() > 0 else ps
            rec_single += len(ps & actual) / K
            rec_pair += len(pp & actual) / K
            rec_freq += len(freq_pred & actual) / K
            exact_pair += pp == actual
        n = len(a_va)
        pred.append(dict(layers=f"{l}->{l + 1}", recall_pair_table=rec_pair / n, recall_single_table=rec_single / n,
                         recall_frequency_only=rec_freq / n, exact_set_pair_table=exact_pair / n,
                         random=K / E, pair_keys_seen=len(pair)))
    res["predictability"] = dict(train_tokens_used=int(sample_tokens), validation_tokens=int(len(val_top[0])),
                                 layers=pred)

    # greedy samples
    model.config.output_router_logits = False
    samples = []
    with torch.no_grad():
        for p in SAMPLE_PROMPTS:
            ids = tok(p, add_special_tokens=False)["input_ids"]
            out = model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False,
                                 pad_token_id=MODEL_CONFIG["pad_token_id"], eos_token_id=None)
            samples.append(dict(prompt=p, ids=ids, continuation_ids=out[0, len(ids):].tolist(),
                                text=tok.decode(out[0])))
    res["samples"] = samples
    (work / "eval.json").write_text(json.dumps(res, indent=1))
    (DEMO_DIR / "eval.json").write_text(json.dumps(res, indent=1))
    log(json.dumps({k: v for k, v in res.items() if k not in ("expert_share", "samples")}, indent=1))
    for s in samples:
        log("---\n" + s["text"])


# ----------------------------------------------------------------------------
# check: SwiftMoE vs transformers
# ----------------------------------------------------------------------------

GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate_inp.weight": "mlp.gate.weight",
}
GGUF_EXPERTS = {"ffn_gate_exps.weight": "gate_proj", "ffn_up_exps.weight": "up_proj", "ffn_down_exps.weight": "down_proj"}


def gguf_state_dict(path: Path) -> dict:
    """The weights a GGUF file holds, dequantized to f32, under transformers' names."""
    import numpy as np
    import torch
    import gguf
    sd = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if t.name.startswith("blk."):
            _, l, rest = t.name.split(".", 2)
            if rest in GGUF_EXPERTS:
                for e in range(w.shape[0]):
                    sd[f"model.layers.{l}.mlp.experts.{e}.{GGUF_EXPERTS[rest]}.weight"] = torch.from_numpy(w[e].copy())
            else:
                sd[f"model.layers.{l}.{GGUF_TO_HF[rest]}"] = torch.from_numpy(w.copy())
        else:
            sd[GGUF_TO_HF[t.name]] = torch.from_numpy(w.copy())
    if MODEL_CONFIG["tie_word_embeddings"]:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    return sd


def stage_check(args) -> None:
    """moe logits (reference kernels, f32 KV cache) vs transformers f32, on the HF export and on
    Models/demo/demo.moe (against transformers run on the Q8_0 GGUF's dequantized weights)."""
    import numpy as np
    import torch
    from transformers import Qwen3MoeForCausalLM
    import transformers
    transformers.logging.set_verbosity_error()
    set_determinism(TRAIN["seed"], args.threads)
    work = args.work
    moe = REPO / ".build" / "release" / "moe"
    if not moe.exists():
        subprocess.run(["swift", "build", "-c", "release", "--product", "moe"], cwd=REPO, check=True)
    val_ids = tokenize_validation(work)
    seqs = [val_ids[1000:1016], val_ids[5000:5064], val_ids[20000:20200]]
    hf_model = Qwen3MoeForCausalLM.from_pretrained(str(work / "hf"), dtype=torch.float32,
                                                   attn_implementation="eager").eval()
    q8_model = Qwen3MoeForCausalLM._from_config(make_config(), attn_implementation="eager",
                                                dtype=torch.float32).eval()
    missing = q8_model.load_state_dict(gguf_state_dict(work / "demo-q8_0.gguf"), strict=False)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    out = []
    for name, model_path, ref in (("hf-f32", work / "hf", hf_model), ("demo.moe (q8_0)", DEMO_DIR / "demo.moe", q8_model)):
        for seq in seqs:
            npy = work / "check-logits.npy"
            cmd = [str(moe), "logits", str(model_path), "--tokens", ",".join(map(str, seq)), "--out", str(npy),
                   "--kernels", "reference", "--kv-cache", "f32", "--threads", "1"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            ours = np.load(npy)
            with torch.no_grad():
                theirs = ref(input_ids=torch.tensor([seq])).logits[0].numpy()
            d = float(np.abs(ours - theirs).max())
            agree = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
            out.append(dict(model=name, tokens=len(seq), max_abs_diff=d, argmax_agreement=agree))
            log(f"  {name:18s} {len(seq):4d} tokens: max |moe - transformers| = {d:.2e}, argmax agree {agree:.3f}")
    # fast kernels (8-bit activations, f16 KV cache: the defaults) and llama.cpp on the Q8_0 GGUF,
    # both against transformers on the Q8_0 weights
    try:
        from llama_cpp import Llama
    except ImportError:
        Llama = None
    for seq in seqs:
        with torch.no_grad():
            theirs = q8_model(input_ids=torch.tensor([seq])).logits[0].numpy()
        npy = work / "check-logits.npy"
        subprocess.run([str(moe), "logits", str(DEMO_DIR / "demo.moe"), "--tokens", ",".join(map(str, seq)),
                        "--out", str(npy), "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
        ours = np.load(npy)
        rows = [("demo.moe fast kernels", ours)]
        if Llama is not None:
            llm = Llama(model_path=str(work / "demo-q8_0.gguf"), n_ctx=512, n_threads=1, logits_all=True,
                        verbose=False)
            llm.eval(seq)
            rows.append(("llama.cpp q8_0 gguf", np.asarray(llm.scores[:len(seq)], dtype=np.float32)))
            del llm
        for name, got in rows:
            d = float(np.abs(got - theirs).max())
            agree = float((got.argmax(-1) == theirs.argmax(-1)).mean())
            out.append(dict(model=name, tokens=len(seq), max_abs_diff=d, argmax_agreement=agree,
                            reference="transformers on the Q8_0 GGUF's dequantized weights"))
            log(f"  {name:22s} {len(seq):4d} tokens: max |diff| vs transformers(q8_0) = {d:.2e}, argmax agree {agree:.3f}")

    # tokenizer: moe tokenize (GGUF metadata in demo.moe) vs transformers on validation text
    tok = load_tokenizer(work)
    text = (DEMO_DIR / "validation.txt").read_text(encoding="utf-8")
    tok_checks = []
    for start in (0, 100_000, 200_000):
        chunk = text[start:start + 20_000]
        want = tok(chunk, add_special_tokens=True)["input_ids"]
        r = subprocess.run([str(moe), "tokenize", str(DEMO_DIR / "demo.moe"), chunk, "--ids"], check=True,
                           capture_output=True, text=True)
        got = [int(x) for x in r.stdout.strip().splitlines()[-1].split(",") if x]
        tok_checks.append(dict(chars=len(chunk), tokens=len(want), identical=got == want))
        log(f"  moe tokenize vs transformers, {len(chunk)} chars at {start}: "
            f"{'identical' if got == want else 'DIFFERENT'} ({len(got)} vs {len(want)} tokens)")
    result = dict(logits=out, tokenizer=tok_checks)
    (work / "check.json").write_text(json.dumps(result, indent=1))
    (DEMO_DIR / "check.json").write_text(json.dumps(result, indent=1))


def stage_report(args) -> None:
    """Print the markdown tables of docs/demo-model.md from <work>/eval.json and train-log.json."""
    work = args.work
    ev = json.loads((work / "eval.json").read_text())
    tl = json.loads((work / "train-log.json").read_text())
    E = MODEL_CONFIG["num_experts"]
    print(f"training: {tl['minutes']:.1f} min, {tl['tokens_seen']} tokens seen, final logged lm loss "
          f"{tl['history'][-1]['lm_loss']}, aux {tl['history'][-1]['aux_loss']}")
    print()
    print("| measure | tokens scored | loss (nats/token) | perplexity |")
    print("|---|---|---|---|")
    for k in ("ppl_windows256", "ppl_llama_style"):
        r = ev[k]
        print(f"| {r['method']} | {r['tokens_scored']} | {r['nll']:.4f} | {r['ppl']:.2f} |")
    for k, r in ev["ppl_by_kind"].items():
        print(f"| {k} documents only ({r['documents']}), each on its own, non-overlapping 256-token windows | "
              f"{r['tokens_scored']} | {r['nll']:.4f} | {r['ppl']:.2f} |")
    print(f"| unigram baseline (training-split token frequencies, add-one) | {ev['validation_tokens'] - 1} | "
          f"{ev['unigram_nll']:.4f} | {ev['unigram_ppl']:.1f} |")
    print()
    print("| layer | " + " | ".join(str(e) for e in range(E)) + " | max/uniform | min/uniform | norm. entropy |")
    print("|---|" + "---|" * (E + 3))
    for l, row in enumerate(ev["expert_share"]):
        b = ev["expert_balance"][l]
        print(f"| {l} | " + " | ".join(f"{100 * x:.1f}" for x in row) +
              f" | {b['max_over_uniform']:.2f} | {b['min_over_uniform']:.2f} | {b['norm_entropy']:.3f} |")
    print()
    ax = ev["aux_loss_validation"]
    print(f"aux loss on validation: pooled over layers (transformers) {ax['pooled_as_transformers']:.3f}; per layer "
          + ", ".join(f"{x:.3f}" for x in ax["per_layer"]) + f"; perfectly balanced = {ax['balanced_value']:.0f}")
    print()
    print("| layers | pair table | single-expert table | frequency only | exact set (pair table) | random |")
    print("|---|---|---|---|---|---|")
    for r in ev["predictability"]["layers"]:
        print(f"| {r['layers']} | {r['recall_pair_table']:.3f} | {r['recall_single_table']:.3f} | "
              f"{r['recall_frequency_only']:.3f} | {r['exact_set_pair_table']:.3f} | {r['random']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["corpus", "tokenizer", "train", "export", "eval", "check", "report", "all"])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch directory outside git")
    ap.add_argument("--converter", default=os.environ.get("LLAMA_CPP_CONVERTER", DEFAULT_CONVERTER))
    ap.add_argument("--threads", type=int, default=TRAIN["threads"],
                    help="torch threads (results are reproducible for a fixed count). On a quiet 2-core machine "
                         "2 threads are ~1.6x faster than 1; with other busy processes on the cores, OpenMP "
                         "oversubscription made 2 threads ~4x slower than 1 here, hence the default")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--pred-train-tokens", type=int, default=262_144,
                    help="training tokens used to estimate the l -> l+1 expert tables")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stages = ["corpus", "tokenizer", "train", "export", "eval", "check"] if args.stage == "all" else [args.stage]
    for s in stages:
        log(f"== {s}")
        globals()[f"stage_{s}"](args)


if __name__ == "__main__":
    main()
