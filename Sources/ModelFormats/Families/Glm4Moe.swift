import Foundation

/// GLM-4.5, GLM-4.5-Air, GLM-4.6 (`Glm4MoeForCausalLM`, GGUF `glm4moe`).
///
/// Attention: grouped-query with optional Q/K/V biases (`attention_bias`; the output projection has
/// none), optional per-head RMSNorm of queries and keys (`use_qk_norm`), and RoPE on the first
/// `head_dim × partial_rotary_factor` dimensions of each head, rotating halves of that part
/// (transformers' `rotate_half` on `q[..., :rotary_dim]`; llama.cpp NeoX). The first
/// `first_k_dense_replace` layers are dense; MoE layers add `n_shared_experts` shared experts.
///
/// Routing (`Glm4MoeTopkRouter`, the same code as DeepSeek-V3's): sigmoid, selection bias, groups,
/// renormalised if `norm_topk_prob`, times `routed_scaling_factor`. Layers past
/// `num_hidden_layers` (the multi-token-prediction layer) are not used, as in transformers.
public enum Glm4MoeFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.glm4moe
    public static let hfModelTypes = ["glm4_moe"]
    public static let ggufArchitectures = ["glm4moe"]

    /// No `attribute_map` in 4.57 or 5.x.
    public static let hfConfigClass = HFConfigClass("Glm4MoeConfig")

    /// Defaults are Glm4MoeConfig's (4.57).
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.requireSiLU()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        // Glm4MoeAttention: getattr(config, "head_dim", hidden_size // num_attention_heads)
        let headDim = try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0)
        let factor = try hf.partialRotaryFactor(default: 0.5)
        // transformers' default RoPE: dim = int(head_dim * partial_rotary_factor)
        let rotary = Int(Double(headDim) * factor)
        let rope = try hf.rope(defaultTheta: 10_000, partialRotary: true)
        var config = ModelConfiguration(
            architecture: .glm4moe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden,
            layerCount: try hf.int("num_hidden_layers"), headCount: heads, kvHeadCount: try hf.kvHeads(default: 8, heads: heads),
            headDim: headDim, ropeTheta: rope.theta, ropeStyle: .halfSplit, ropeDimensions: rotary,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 131_072, as: "context"),
            qkNorm: try hf.bool("use_qk_norm", default: false, as: "qk norm") ? .perHead : .none,
            attentionBias: try hf.bool("attention_bias", default: false, as: "qkv bias"),
            expertCount: 0, expertsPerToken: 0, expertFFNSize: 0,
            routing: try DeepSeekV3Family.sigmoidRouting(hf, groups: 1, used: 1, normalize: true, scale: 1),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
        config.ropeScaling = rope.scaling
        try DeepSeekHF.readMoE(hf, into: &config, defaults: .init(experts: 128, topK: 8, shared: 1, firstDense: 1, context: 131_072, queryRank: 0))
        return config
    }

    public static func configuration(gguf g: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            g, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: false,
            expertFFNKey: "expert_feed_forward_length")
        try DeepSeekV2Family.readGGUFMoE(g, into: &config, defaultScoring: .sigmoid)
        // Optional tensors in llama.cpp: the file says whether Q/K norms and Q/K/V biases exist.
        config.qkNorm = g.file.tensor(WeightName.queryNorm(0).ggufName) != nil ? .perHead : .none
        config.attentionBias = g.file.tensor(WeightName.queryBias(0).ggufName) != nil
        return config
    }

    public static func hfName(_ name: WeightName) -> String { DeepSeekHF.hfName(name) }
}

extension HFConfigReader {
    /// `partial_rotary_factor`, top-level (4.57) or inside `rope_parameters` (5.x); `value` (the
    /// class default) when absent. Spellings that disagree are refused; the factor must be in (0, 1].
    func partialRotaryFactor(default value: Double) throws -> Double {
        var found: [(Double, String)] = []
        if let top = try optionalDouble("partial_rotary_factor") { found.append((top, "partial_rotary_factor")) }
        if let object = values["rope_parameters"] as? [String: Any], let n = object["partial_rotary_factor"] as? NSNumber {
            found.append((n.doubleValue, "rope_parameters.partial_rotary_factor"))
        }
        if let first = found.first, let other = found.first(where: { $0.0 != first.0 }) {
            throw invalid("\(first.1) = \(first.0) and \(other.1) = \(other.0) disagree")
        }
        let factor = found.first?.0 ?? value
        guard factor > 0, factor <= 1 else { throw invalid("partial_rotary_factor \(factor) must be in (0, 1]") }
        record("partial rotary factor", Self.show(factor), key: found.first?.1)
        return factor
    }
}
