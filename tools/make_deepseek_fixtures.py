#!/usr/bin/env python3
"""Tiny random DeepSeek-V2, DeepSeek-V3 and GLM-4.5-MoE fixtures (issue 15).

Same layout as tools/make_fixtures.py (``Tests/Fixtures/<case>/`` with ``hf/``, GGUF files from
llama.cpp's converter, ``ref/`` logits and expert choices, ``manifest.json``), so the parity tests
pick the cases up. What differs from that script:

* routing is captured from the families' own gate modules (``mlp.gate``): the ids and weights
  transformers computes, ordered the way the Swift router orders them (by selection score, biased
  and group-masked, descending, ties to the lower index). The order is computed here from the
  gate's input; the script checks that it picks exactly transformers' set of experts;
* a GGUF file routes as llama.cpp does, which is not always transformers' rule (llama.cpp scores an
  expert group by its best two experts for every architecture, and masks dropped groups to -inf
  where transformers writes 0). Its reference logits come from transformers' model on the GGUF's
  weights with the gate replaced by llama.cpp's rule (``llamacpp_gate`` below, written from
  ``build_moe_ffn`` in llama.cpp's src/llama-graph.cpp). The F32 GGUF is first checked to give the
  HF model's logits exactly under transformers' own rule;
* DeepSeek-V3's ``e_score_correction_bias`` (a buffer, not a parameter) gets random values, so the
  bias changes which experts win.

Usage: ``python3 tools/make_deepseek_fixtures.py [--cases a,b] [--converter PATH]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tokenizer corpus, converter wrapper, helpers)
from make_fixtures import np, torch, transformers, gguf, log  # noqa: E402

SEQS = mf.SEQ_LENGTHS
GAP = 1e-3

CASES = [
    dict(name="deepseek-v2", model_type="deepseek_v2", gguf_arch="deepseek2", tokenizer="qwen2",
         config=dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=16, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=4, q_lora_rank=48, kv_lora_rank=32,
                     qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=8,
                     num_experts_per_tok=3, n_shared_experts=2, first_k_dense_replace=1,
                     topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=1.5,
                     norm_topk_prob=False, rope_theta=10000.0, rope_scaling=None, rms_norm_eps=1e-6,
                     max_position_embeddings=4096, tie_word_embeddings=False, attention_bias=False,
                     bos_token_id=None, eos_token_id=None)),
    dict(name="deepseek-v2-lite", model_type="deepseek_v2", gguf_arch="deepseek2", tokenizer="qwen2",
         config=dict(hidden_size=64, intermediate_size=80, moe_intermediate_size=16, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=32,
                     qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
                     num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, topk_method="greedy",
                     routed_scaling_factor=1.0, norm_topk_prob=False, rope_theta=10000.0, rope_scaling=None,
                     rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
                     attention_bias=False, bos_token_id=None, eos_token_id=None)),
    # scoring_func is not a DeepseekV3Config attribute; the released config.json has it, and
    # llama.cpp's converter reads it to write expert_gating_func = sigmoid.
    dict(name="deepseek-v3", model_type="deepseek_v3", gguf_arch="deepseek2", tokenizer="qwen2",
         config=dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=16, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=4, q_lora_rank=40, kv_lora_rank=32,
                     qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
                     num_experts_per_tok=3, n_shared_experts=1, first_k_dense_replace=1, n_group=4,
                     topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5, rope_interleave=True,
                     scoring_func="sigmoid", topk_method="noaux_tc", rope_theta=10000.0, rope_scaling=None,
                     rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False,
                     attention_bias=False, bos_token_id=None, eos_token_id=None)),
    dict(name="glm4moe", model_type="glm4_moe", gguf_arch="glm4moe", tokenizer="glm",
         config=dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=16, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=24, partial_rotary_factor=0.5,
                     n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
                     n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.5, use_qk_norm=True,
                     attention_bias=True, rope_theta=10000.0, rope_scaling=None, rms_norm_eps=1e-5,
                     max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=None,
                     eos_token_id=None)),
]
VOCAB = 352
GLM_SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                "<|assistant|>", "<|observation|>", "<think>", "</think>"]


# ----------------------------------------------------------------------------
# tokenizer (Qwen2-style BPE; GLM's special tokens for the GLM case, which its converter needs)
# ----------------------------------------------------------------------------

def install_tokenizer(kind: str, dst: Path, cache: Path) -> None:
    if kind == "qwen2":
        mf.install_tokenizer(dict(tokenizer="qwen2", vocab_size=VOCAB), dst, cache)
        return
    from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(mf.QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(GLM_SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(mf.corpus_lines(), trainer=trainer)
    tok.add_special_tokens(GLM_SPECIALS)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.save_pretrained(str(dst))


# ----------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------

def make_model(case: dict, seed: int):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(case["model_type"], vocab_size=VOCAB, hidden_act="silu", initializer_range=0.02,
                               attention_dropout=0.0, **case["config"])
    cfg.torch_dtype = torch.float32
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name == "model.embed_tokens.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
        for blk in gates(model):
            if blk is not None and hasattr(blk, "e_score_correction_bias"):
                blk.e_score_correction_bias.copy_(0.1 * torch.randn(blk.e_score_correction_bias.shape, generator=g))
    return model


def gates(model) -> list:
    out = []
    for layer in model.model.layers:
        mlp = layer.mlp
        out.append(mlp.gate if hasattr(mlp, "experts") else None)
    return out


def scores_of(gate, x: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores used as weights, selection scores before group masking), f32, as the gate computes them."""
    logits = torch.nn.functional.linear(x.reshape(-1, x.shape[-1]).float(), gate.weight.float())
    if cfg.model_type == "deepseek_v2":
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        return scores, scores.clone()
    scores = logits.sigmoid()
    return scores, scores + gate.e_score_correction_bias.unsqueeze(0)


def group_mask(sel: torch.Tensor, n_group: int, topk_group: int, by_max: bool, fill: float) -> torch.Tensor:
    if n_group is None or n_group <= 1:
        return sel
    e = sel.shape[-1]
    grouped = sel.view(-1, n_group, e // n_group)
    gs = grouped.max(dim=-1).values if by_max else grouped.topk(2, dim=-1)[0].sum(dim=-1)
    keep = torch.zeros_like(gs)
    keep.scatter_(1, torch.topk(gs, k=topk_group, dim=-1)[1], 1)
    mask = keep.unsqueeze(-1).expand(-1, n_group, e // n_group).reshape(-1, e).bool()
    return sel.masked_fill(~mask, fill)


def group_gap(sel: torch.Tensor, n_group: int, topk_group: int, by_max: bool) -> float:
    """Smallest gap between the last kept group's score and the next one's."""
    grouped = sel.view(-1, n_group, sel.shape[-1] // n_group)
    gs = grouped.max(dim=-1).values if by_max else grouped.topk(2, dim=-1)[0].sum(dim=-1)
    top = gs.sort(dim=-1, descending=True).values
    return float((top[:, topk_group - 1] - top[:, topk_group]).min().detach())


def hf_rule(cfg):
    """(group scored by max?, masked value) of transformers' gate for this config."""
    if cfg.model_type == "deepseek_v2":
        if cfg.topk_method == "greedy":
            return None
        return True, 0.0
    return False, 0.0


def stable_order(sel: torch.Tensor) -> list[list[int]]:
    """Indices by descending value, ties to the lower index (the Swift router's order)."""
    out = []
    for row in sel.tolist():
        out.append(sorted(range(len(row)), key=lambda i: (-row[i], i)))
    return out


def gaps_ok(order, sel, k) -> float:
    worst = float("inf")
    for o, row in zip(order, sel.tolist()):
        worst = min(worst, row[o[k - 1]] - row[o[k]])
    return worst


def llamacpp_gate(gate, cfg):
    """The gate as llama.cpp's build_moe_ffn computes it from the GGUF keys the converter writes."""
    scale = getattr(cfg, "routed_scaling_factor", None) or 1.0
    # deepseek2 GGUFs carry expert_weights_norm only when norm_topk_prob is true; glm4moe always writes it.
    norm = bool(getattr(cfg, "norm_topk_prob", False))
    n_group = getattr(cfg, "n_group", None)

    def forward(hidden_states):
        scores, sel = scores_of(gate, hidden_states, cfg)
        if n_group is not None and n_group > 1:
            sel = group_mask(sel, n_group, cfg.topk_group, by_max=False, fill=float("-inf"))
        idx = torch.topk(sel, k=cfg.num_experts_per_tok, dim=-1)[1]
        w = scores.gather(1, idx)
        if norm:
            w = w / torch.clamp(w.sum(dim=-1, keepdim=True), min=6.103515625e-5)
        return idx, w * scale
    return forward


def run_reference(model, seqs, gguf_rule: bool = False):
    cfg = model.config
    gs = gates(model)
    captured, hooks, saved = {}, [], {}
    for li, g in enumerate(gs):
        if g is None:
            continue
        if gguf_rule:
            saved[li] = g.forward
            g.forward = llamacpp_gate(g, cfg)
        hooks.append(g.register_forward_hook(
            lambda mod, inp, out, li=li: captured.__setitem__(li, (inp[0].detach().clone(), out[0].clone(), out[1].clone()))))
    all_logits, all_experts, min_gap = [], [], float("inf")
    try:
        for seq in seqs:
            captured.clear()
            with torch.no_grad():
                out = model(input_ids=torch.tensor([seq], dtype=torch.long), use_cache=False)
            all_logits.append(out.logits[0].float().numpy().astype(np.float32))
            layers = []
            for li, g in enumerate(gs):
                if g is None:
                    layers.append(None)
                    continue
                x, idx, w = captured[li]
                _, sel = scores_of(g, x, cfg)
                rule = (False, float("-inf")) if gguf_rule else hf_rule(cfg)
                if rule is not None and (getattr(cfg, "n_group", None) or 1) > 1:
                    min_gap = min(min_gap, group_gap(sel, cfg.n_group, cfg.topk_group, rule[0]))
                    sel = group_mask(sel, cfg.n_group, cfg.topk_group, by_max=rule[0], fill=rule[1])
                order = stable_order(sel)
                k = cfg.num_experts_per_tok
                min_gap = min(min_gap, gaps_ok(order, sel, k))
                toks = []
                for t in range(len(seq)):
                    ids = order[t][:k]
                    theirs = [int(v) for v in idx[t].tolist()]
                    if sorted(ids) != sorted(theirs):
                        raise RuntimeError(f"layer {li} token {t}: our order picks {ids}, the gate {theirs}")
                    weight = {int(i): float(v) for i, v in zip(idx[t].tolist(), w[t].tolist())}
                    toks.append({"ids": ids, "weights": [weight[i] for i in ids]})
                layers.append(toks)
            all_experts.append(layers)
    finally:
        for h in hooks:
            h.remove()
        for li, f in saved.items():
            gs[li].forward = f
    return all_logits, all_experts, min_gap, []


def routing_ok(model, experts, min_gap) -> tuple[bool, str]:
    if min_gap < GAP:
        return False, f"min top-k gap {min_gap:.2e}"
    n = model.config.n_routed_experts
    for li, g in enumerate(gates(model)):
        if g is None:
            continue
        used = {i for seq in experts for tok in seq[li] for i in tok["ids"]}
        if len(used) < n:
            return False, f"layer {li} uses {len(used)}/{n} experts"
    return True, f"min gap {min_gap:.3e}"


# ----------------------------------------------------------------------------
# GGUF -> state dict
# ----------------------------------------------------------------------------

def gguf_to_state_dict(path: Path, model) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(str(path))
    cfg = model.config
    t = {x.name: gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32) for x in reader.tensors}
    info = {x.name: {"type": x.tensor_type.name, "shape": [int(v) for v in x.shape]} for x in reader.tensors}
    used = set()

    def take(n):
        used.add(n)
        return t[n]

    attn = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "q_norm": "attn_q_norm",
            "k_norm": "attn_k_norm", "q_a_proj": "attn_q_a", "q_a_layernorm": "attn_q_a_norm", "q_b_proj": "attn_q_b",
            "kv_a_proj_with_mqa": "attn_kv_a_mqa", "kv_a_layernorm": "attn_kv_a_norm"}
    sd = {}
    for key, ref in model.state_dict().items():
        p = key.split(".")
        if key == "model.embed_tokens.weight":
            a = take("token_embd.weight")
        elif key == "model.norm.weight":
            a = take("output_norm.weight")
        elif key == "lm_head.weight":
            a = take("output.weight")
        else:
            b, rest = int(p[2]), p[3:]
            if rest == ["input_layernorm", "weight"]:
                a = take(f"blk.{b}.attn_norm.weight")
            elif rest == ["post_attention_layernorm", "weight"]:
                # glm4moe names the FFN norm after the checkpoint (post_attention_norm)
                a = take(f"blk.{b}.ffn_norm.weight" if f"blk.{b}.ffn_norm.weight" in t else f"blk.{b}.post_attention_norm.weight")
            elif rest[:2] == ["self_attn", "kv_b_proj"]:
                kb = take(f"blk.{b}.attn_k_b.weight")  # (heads, kv_lora_rank, nope): W_UK transposed
                vb = take(f"blk.{b}.attn_v_b.weight")  # (heads, v_head_dim, kv_lora_rank)
                a = np.concatenate([np.concatenate([kb[h].T, vb[h]], axis=0) for h in range(kb.shape[0])], axis=0)
            elif rest[0] == "self_attn":
                a = take(f"blk.{b}.{attn[rest[1]]}.{rest[2]}")
            elif rest[:2] == ["mlp", "gate"]:
                a = take(f"blk.{b}.exp_probs_b.bias" if rest[2] == "e_score_correction_bias" else f"blk.{b}.ffn_gate_inp.weight")
            elif rest[:2] == ["mlp", "experts"]:
                a = take(f"blk.{b}.ffn_{rest[3].split('_')[0]}_exps.weight")[int(rest[2])]
            elif rest[:2] == ["mlp", "shared_experts"]:
                a = take(f"blk.{b}.ffn_{rest[2].split('_')[0]}_shexp.weight")
            elif rest[0] == "mlp":
                a = take(f"blk.{b}.ffn_{rest[1].split('_')[0]}.weight")
            else:
                raise KeyError(key)
        sd[key] = torch.from_numpy(np.ascontiguousarray(a).reshape(ref.shape).copy())
    unused = set(t) - used
    if unused:
        raise RuntimeError(f"GGUF tensors not mapped back: {sorted(unused)}")
    return sd, info


# ----------------------------------------------------------------------------

def build_case(case: dict, out_root: Path, converter: Path, cache: Path) -> None:
    name = case["name"]
    cdir = out_root / name
    log(f"== {name}")
    shutil.rmtree(cdir, ignore_errors=True)
    (cdir / "hf").mkdir(parents=True)
    (cdir / "ref").mkdir()
    install_tokenizer(case["tokenizer"], cdir / "hf", cache)
    base_seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    rs = np.random.RandomState(base_seed)
    seqs = [[int(x) for x in rs.randint(0, VOCAB, size=n)] for n in SEQS]
    for attempt in range(mf.MAX_SEED_TRIES):
        seed = base_seed + attempt
        model = make_model(case, seed)
        _, experts, gap, _ = run_reference(model, seqs)
        ok, why = routing_ok(model, experts, gap)
        if ok and case["gguf_arch"]:
            _, _, gap2, _ = run_reference(model, seqs, gguf_rule=True)
            ok, why = gap2 >= GAP, f"{why}, llama.cpp rule gap {gap2:.3e}"
        log(f"  seed {seed}: {'ok' if ok else 'rejected'} ({why})")
        if ok:
            break
    else:
        raise RuntimeError(f"{name}: no seed with clean routing")
    model.save_pretrained(str(cdir / "hf"), safe_serialization=True)
    cfg = model.config

    def fresh():
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32).eval()

    f32 = fresh()
    f32.load_state_dict(mf.load_hf_weights(cdir / "hf", f32), strict=True)
    refs = {"f32": run_reference(f32, seqs)}
    models = [{"path": "hf", "format": "hf", "dtype": "f32", "reference": "f32"}]
    gguf_info, sanity, meta = {}, {}, {}
    if case["gguf_arch"]:
        logf = cache / f"convert-{name}.log"
        logf.write_text("")
        for outtype in ("f32", "f16", "q8_0"):
            fn = f"model-{outtype}.gguf"
            mf.run_converter(converter, cdir / "hf", cdir / fn, outtype, "qwen2", logf, f"tiny-{name}")
            sd, info = gguf_to_state_dict(cdir / fn, f32)
            gguf_info[fn] = info
            m = fresh()
            m.load_state_dict(sd, strict=True)
            if outtype == "f32":
                meta = mf.gguf_metadata(cdir / fn)
                assert meta.get("general.architecture") == case["gguf_arch"], meta.get("general.architecture")
                r = run_reference(m, seqs)
                d = max(float(np.abs(a - b).max()) for a, b in zip(r[0], refs["f32"][0]))
                wd = max(float((sd[k] - f32.state_dict()[k]).abs().max()) for k in sd)
                sanity = {"gguf-f32_logits_max_abs_vs_f32": d, "gguf-f32_weights_max_abs_vs_f32": wd}
                log(f"  sanity gguf-f32 vs f32 (transformers' rule): weights {wd:.3g}, logits {d:.3g}")
                if wd != 0.0 or d > 1e-6 or r[1] != refs["f32"][1]:
                    raise RuntimeError("gguf-f32 round trip does not reproduce the f32 model")
            refs[f"gguf-{outtype}"] = run_reference(m, seqs, gguf_rule=True)
            models.append({"path": fn, "format": "gguf", "dtype": outtype, "reference": f"gguf-{outtype}"})
    references, max_abs = {}, {}
    for rname, (logits, experts, gap, _) in refs.items():
        files = []
        for i, lg in enumerate(logits):
            fn = f"ref/{rname}-seq{i}.npy"
            np.save(cdir / fn, np.ascontiguousarray(lg), allow_pickle=False)
            files.append(fn)
        (cdir / f"ref/{rname}-experts.json").write_text(json.dumps(experts, separators=(",", ":")) + "\n")
        references[rname] = {"logits": files, "experts": f"ref/{rname}-experts.json", "min_topk_gap": gap}
        if rname != "f32":
            max_abs[rname] = max(float(np.abs(a - b).max()) for a, b in zip(logits, refs["f32"][0]))
        nd, tot = mf.expert_id_diffs(experts, refs["f32"][1])
        log(f"  {rname:>10}: max |logits - f32| {max_abs.get(rname, 0):.3e}, expert lists differing from f32: {nd}/{tot}")
    c = case["config"]
    manifest = {
        "case": name, "hf_model_type": case["model_type"], "gguf_arch": case["gguf_arch"], "sequences": seqs,
        "models": models, "references": references, "max_abs_vs_f32": max_abs,
        "config_summary": {"layers": c["num_hidden_layers"], "experts": c["n_routed_experts"],
                           "top_k": c["num_experts_per_tok"], "hidden": c["hidden_size"], "vocab": VOCAB,
                           "dense_layers": [i for i, g in enumerate(gates(f32)) if g is None],
                           "shared_experts": c["n_shared_experts"]},
        "seed": seed, "near_ties": {}, "sanity": sanity,
        "gguf_tensors": gguf_info,
        "gguf_metadata": {k: v for k, v in meta.items() if not k.startswith("tokenizer.ggml.")},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "gguf": mf._gguf_version(), "llama_cpp_converter": mf.CONVERTER_VERSION},
    }
    (cdir / "manifest.json").write_text(json.dumps(manifest, indent=1, default=mf._json_default) + "\n")


YARN = dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16, beta_fast=8.0, beta_slow=1.0,
            mscale=1.0, mscale_all_dim=0.8)


def build_yarn(out_root: Path) -> None:
    """``rope-deepseek/``: each case's committed weights under a YaRN config (positions past the
    original 16), with transformers' logits. V3 and GLM scale as their classes do; the V2 config is
    saved by transformers 4.57, whose DeepseekV2Attention leaves the softmax scale alone."""
    from transformers import AutoConfig, AutoModelForCausalLM
    rdir = out_root / "rope-deepseek"
    shutil.rmtree(rdir, ignore_errors=True)
    rdir.mkdir()
    record = {"generator": "tools/make_deepseek_fixtures.py --yarn", "scaling": YARN, "variants": {}}
    for case in CASES:
        name = case["name"]
        if name == "deepseek-v2-lite":
            continue
        manifest = json.loads((out_root / name / "manifest.json").read_text())
        seqs = manifest["sequences"][1:]
        cfg = AutoConfig.from_pretrained(str(out_root / name / "hf"))
        base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32).eval()
        base.load_state_dict(mf.load_hf_weights(out_root / name / "hf", base), strict=True)
        cfg.rope_scaling = dict(YARN)
        # transformers 4.57 derives YaRN's attention factor from max_position_embeddings /
        # original_max_position_embeddings when the latter is given; released DeepSeek configs keep
        # that ratio equal to `factor`, and so does this one.
        cfg.max_position_embeddings = int(YARN["factor"] * YARN["original_max_position_embeddings"])
        scaled = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32).eval()
        scaled.load_state_dict(base.state_dict(), strict=True)
        vname = f"{name}-yarn"
        (rdir / vname).mkdir()
        cfg.save_pretrained(str(rdir / vname))
        files, moved = [], 0.0
        for i, seq in enumerate(seqs):
            with torch.no_grad():
                a = scaled(input_ids=torch.tensor([seq]), use_cache=False).logits[0].numpy().astype(np.float32)
                b = base(input_ids=torch.tensor([seq]), use_cache=False).logits[0].numpy().astype(np.float32)
            moved = max(moved, float(np.abs(a - b).max()))
            fn = f"{vname}-seq{i}.npy"
            np.save(rdir / fn, a, allow_pickle=False)
            files.append(fn)
        record["variants"][vname] = {"family": name, "sequences": seqs, "logits": files, "moved_by_scaling": moved}
        log(f"  {vname}: YaRN moves transformers' logits by {moved:.3g}")
    (rdir / "rope.json").write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--converter", default=mf.DEFAULT_CONVERTER)
    ap.add_argument("--out", default=str(mf.REPO / "Tests" / "Fixtures"))
    ap.add_argument("--cases", default="")
    ap.add_argument("--cache", default="/tmp/swiftmoe-fixture-cache")
    ap.add_argument("--yarn", action="store_true", help="only (re)write rope-deepseek/ from the committed cases")
    a = ap.parse_args()
    if a.yarn:
        build_yarn(Path(a.out))
        return
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = set(filter(None, a.cases.split(",")))
    for case in CASES:
        if not wanted or case["name"] in wanted:
            build_case(case, Path(a.out), Path(a.converter), cache)


if __name__ == "__main__":
    main()
