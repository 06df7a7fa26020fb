/// The runtime's name for every weight a model can have, independent of the file format.
///
/// ``ggufName`` gives llama.cpp's tensor name, which GGUF files and our own store use;
/// each ``ModelFamily`` maps these to its Hugging Face checkpoint names. Expert weights are
/// addressed one expert at a time even where a GGUF file stacks all experts of a layer in
/// one tensor (``stackedGGUFName``).
public enum WeightName: Hashable, Sendable, CustomStringConvertible {
    case tokenEmbedding, outputNorm, output
    case attentionNorm(Int), query(Int), key(Int), value(Int), attentionOutput(Int)
    case queryBias(Int), keyBias(Int), valueBias(Int), queryNorm(Int), keyNorm(Int)
    case ffnNorm(Int)
    /// The router ("gate") of an MoE layer: `[hidden, experts]`.
    case router(Int)
    case expertGate(Int, Int), expertUp(Int, Int), expertDown(Int, Int)
    case sharedExpertRouter(Int), sharedGate(Int), sharedUp(Int), sharedDown(Int)
    case denseGate(Int), denseUp(Int), denseDown(Int)
    /// GPT-OSS: the output projection's bias, one learned sink logit per query head, the
    /// router's bias, and every expert's gate/up/down biases stacked per layer (`[ffn, experts]`,
    /// `[hidden, experts]`; dense tensors, small next to the experts).
    case attentionOutputBias(Int), attentionSinks(Int), routerBias(Int)
    case expertGateBias(Int), expertUpBias(Int), expertDownBias(Int)
    /// Per-expert bias added to the router scores to choose experts, not to weight them (DeepSeek-V3).
    case expertSelectionBias(Int)
    /// Multi-head latent attention: the low-rank query pair and its norm, the joint KV down-projection
    /// (latent + shared rotary key) and its norm, the latent up-projection (`kv_b`), and llama.cpp's
    /// split of it into a per-head transposed key part (`k_b`) and value part (`v_b`).
    case queryA(Int), queryANorm(Int), queryB(Int), kvA(Int), kvANorm(Int), kvB(Int), keyB(Int), valueB(Int)

    public var ggufName: String {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .outputNorm: return "output_norm.weight"
        case .output: return "output.weight"
        case let .attentionNorm(l): return "blk.\(l).attn_norm.weight"
        case let .query(l): return "blk.\(l).attn_q.weight"
        case let .key(l): return "blk.\(l).attn_k.weight"
        case let .value(l): return "blk.\(l).attn_v.weight"
        case let .attentionOutput(l): return "blk.\(l).attn_output.weight"
        case let .queryBias(l): return "blk.\(l).attn_q.bias"
        case let .keyBias(l): return "blk.\(l).attn_k.bias"
        case let .valueBias(l): return "blk.\(l).attn_v.bias"
        case let .queryNorm(l): return "blk.\(l).attn_q_norm.weight"
        case let .keyNorm(l): return "blk.\(l).attn_k_norm.weight"
        case let .ffnNorm(l): return "blk.\(l).ffn_norm.weight"
        case let .router(l): return "blk.\(l).ffn_gate_inp.weight"
        case let .expertGate(l, e): return "blk.\(l).ffn_gate_exps.weight[\(e)]"
        case let .expertUp(l, e): return "blk.\(l).ffn_up_exps.weight[\(e)]"
        case let .expertDown(l, e): return "blk.\(l).ffn_down_exps.weight[\(e)]"
        case let .sharedExpertRouter(l): return "blk.\(l).ffn_gate_inp_shexp.weight"
        case let .sharedGate(l): return "blk.\(l).ffn_gate_shexp.weight"
        case let .sharedUp(l): return "blk.\(l).ffn_up_shexp.weight"
        case let .sharedDown(l): return "blk.\(l).ffn_down_shexp.weight"
        case let .denseGate(l): return "blk.\(l).ffn_gate.weight"
        case let .denseUp(l): return "blk.\(l).ffn_up.weight"
        case let .denseDown(l): return "blk.\(l).ffn_down.weight"
        case let .attentionOutputBias(l): return "blk.\(l).attn_output.bias"
        case let .attentionSinks(l): return "blk.\(l).attn_sinks.weight"
        case let .routerBias(l): return "blk.\(l).ffn_gate_inp.bias"
        case let .expertGateBias(l): return "blk.\(l).ffn_gate_exps.bias"
        case let .expertUpBias(l): return "blk.\(l).ffn_up_exps.bias"
        case let .expertDownBias(l): return "blk.\(l).ffn_down_exps.bias"
        case let .expertSelectionBias(l): return "blk.\(l).exp_probs_b.bias"
        case let .queryA(l): return "blk.\(l).attn_q_a.weight"
        case let .queryANorm(l): return "blk.\(l).attn_q_a_norm.weight"
        case let .queryB(l): return "blk.\(l).attn_q_b.weight"
        case let .kvA(l): return "blk.\(l).attn_kv_a_mqa.weight"
        case let .kvANorm(l): return "blk.\(l).attn_kv_a_norm.weight"
        case let .kvB(l): return "blk.\(l).attn_kv_b.weight"
        case let .keyB(l): return "blk.\(l).attn_k_b.weight"
        case let .valueB(l): return "blk.\(l).attn_v_b.weight"
        }
    }

    /// Another GGUF name llama.cpp gives this weight in some architectures (`glm4moe` writes the FFN
    /// norm as `post_attention_norm`).
    public var alternateGGUFName: String? {
        if case let .ffnNorm(l) = self { return "blk.\(l).post_attention_norm.weight" }
        return nil
    }

    /// Every non-expert weight layer `l` can have, in any family (a `.moe` store copies those present).
    public static func layerDenseNames(_ l: Int) -> [WeightName] {
        [.attentionNorm(l), .query(l), .key(l), .value(l), .attentionOutput(l), .queryBias(l), .keyBias(l), .valueBias(l),
         .queryNorm(l), .keyNorm(l), .ffnNorm(l), .router(l), .expertSelectionBias(l), .sharedExpertRouter(l), .sharedGate(l),
         .sharedUp(l), .sharedDown(l), .denseGate(l), .denseUp(l), .denseDown(l),
         .queryA(l), .queryANorm(l), .queryB(l), .kvA(l), .kvANorm(l), .kvB(l), .keyB(l), .valueB(l),
         .attentionOutputBias(l), .attentionSinks(l), .routerBias(l), .expertGateBias(l), .expertUpBias(l), .expertDownBias(l)]
    }

    /// For an expert weight: the stacked GGUF tensor holding it and the expert's index.
    public var stackedGGUFName: (tensor: String, expert: Int)? {
        switch self {
        case let .expertGate(l, e): return ("blk.\(l).ffn_gate_exps.weight", e)
        case let .expertUp(l, e): return ("blk.\(l).ffn_up_exps.weight", e)
        case let .expertDown(l, e): return ("blk.\(l).ffn_down_exps.weight", e)
        default: return nil
        }
    }

    /// The Hugging Face name shared by the Llama-style families; families override the rest.
    public var commonHFName: String? {
        switch self {
        case .tokenEmbedding: return "model.embed_tokens.weight"
        case .outputNorm: return "model.norm.weight"
        case .output: return "lm_head.weight"
        case let .attentionNorm(l): return "model.layers.\(l).input_layernorm.weight"
        case let .query(l): return "model.layers.\(l).self_attn.q_proj.weight"
        case let .key(l): return "model.layers.\(l).self_attn.k_proj.weight"
        case let .value(l): return "model.layers.\(l).self_attn.v_proj.weight"
        case let .attentionOutput(l): return "model.layers.\(l).self_attn.o_proj.weight"
        case let .queryBias(l): return "model.layers.\(l).self_attn.q_proj.bias"
        case let .keyBias(l): return "model.layers.\(l).self_attn.k_proj.bias"
        case let .valueBias(l): return "model.layers.\(l).self_attn.v_proj.bias"
        case let .queryNorm(l): return "model.layers.\(l).self_attn.q_norm.weight"
        case let .keyNorm(l): return "model.layers.\(l).self_attn.k_norm.weight"
        case let .ffnNorm(l): return "model.layers.\(l).post_attention_layernorm.weight"
        case let .router(l): return "model.layers.\(l).mlp.gate.weight"
        case let .expertGate(l, e): return "model.layers.\(l).mlp.experts.\(e).gate_proj.weight"
        case let .expertUp(l, e): return "model.layers.\(l).mlp.experts.\(e).up_proj.weight"
        case let .expertDown(l, e): return "model.layers.\(l).mlp.experts.\(e).down_proj.weight"
        case let .sharedExpertRouter(l): return "model.layers.\(l).mlp.shared_expert_gate.weight"
        case let .sharedGate(l): return "model.layers.\(l).mlp.shared_expert.gate_proj.weight"
        case let .sharedUp(l): return "model.layers.\(l).mlp.shared_expert.up_proj.weight"
        case let .sharedDown(l): return "model.layers.\(l).mlp.shared_expert.down_proj.weight"
        case let .denseGate(l): return "model.layers.\(l).mlp.gate_proj.weight"
        case let .denseUp(l): return "model.layers.\(l).mlp.up_proj.weight"
        case let .denseDown(l): return "model.layers.\(l).mlp.down_proj.weight"
        case let .attentionOutputBias(l): return "model.layers.\(l).self_attn.o_proj.bias"
        case .attentionSinks, .routerBias, .expertGateBias, .expertUpBias, .expertDownBias: return nil
        case let .expertSelectionBias(l): return "model.layers.\(l).mlp.gate.e_score_correction_bias"
        case let .queryA(l): return "model.layers.\(l).self_attn.q_a_proj.weight"
        case let .queryANorm(l): return "model.layers.\(l).self_attn.q_a_layernorm.weight"
        case let .queryB(l): return "model.layers.\(l).self_attn.q_b_proj.weight"
        case let .kvA(l): return "model.layers.\(l).self_attn.kv_a_proj_with_mqa.weight"
        case let .kvANorm(l): return "model.layers.\(l).self_attn.kv_a_layernorm.weight"
        case let .kvB(l): return "model.layers.\(l).self_attn.kv_b_proj.weight"
        case .keyB, .valueB: return nil  // llama.cpp's split of kv_b; checkpoints have kv_b_proj
        }
    }

    public var description: String { ggufName }
}
