/// Qwen3-MoE (`Qwen3MoeForCausalLM`, GGUF `qwen3moe`).
///
/// Routing: softmax, top-k, renormalised if `norm_topk_prob` (true in the released models;
/// transformers' default is false; llama.cpp hard-codes true, which GGUF files inherit unless
/// they carry `qwen3moe.expert_weights_norm`). Per-head RMSNorm on queries and keys before
/// RoPE; `head_dim` is explicit. Layers can be dense (`mlp_only_layers`, `decoder_sparse_step`).
public enum Qwen3MoEFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.qwen3moe
    public static let hfModelTypes = ["qwen3_moe"]
    public static let ggufArchitectures = ["qwen3moe"]

    /// 5.x maps `num_experts` to `num_local_experts` (and writes the latter); 4.57 had no alias.
    public static let hfConfigClass = HFConfigClass("Qwen3MoeConfig", attributeMap: ["num_experts": "num_local_experts"])

    /// Defaults are Qwen3MoeConfig's, the same in transformers 4.57 and 5.x.
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.requireSiLU()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        _ = try hf.layerTypes(layers: layers)  // checked as 5.x checks it; this attention ignores it
        let experts = try hf.int("num_experts", default: 128, as: "experts")
        let kinds = try qwenLayerKinds(hf, layers: layers, experts: experts)
        guard try hf.optionalBool("attention_bias") != true else {
            throw hf.invalid("attention_bias true (biases on q, k, v and o projections) is not supported yet")
        }
        // Every layer slides when use_sliding_window (4.57 and 5.x alike); a null window means none.
        let useWindow = try hf.optionalBool("use_sliding_window")
        if useWindow != true { hf.record("sliding window", "none", key: useWindow == nil ? nil : "use_sliding_window") }
        let window = useWindow == true ? try hf.optionalInt("sliding_window", default: 4096, as: "sliding window") : nil
        let rope = try hf.rope(defaultTheta: 10_000)
        return ModelConfiguration(
            architecture: .qwen3moe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.kvHeads(default: 4, heads: heads),
            // Qwen3MoeAttention: getattr(config, "head_dim", hidden_size // num_attention_heads)
            headDim: try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            ropeTheta: rope.theta, ropeScaling: rope.scaling, ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-6, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 32_768, as: "context"),
            qkNorm: .perHead, slidingWindow: window,
            expertCount: experts, expertsPerToken: try hf.int("num_experts_per_tok", default: 8, as: "top-k"),
            expertFFNSize: try hf.int("moe_intermediate_size"),
            denseFFNSize: kinds.contains(.dense) ? try hf.int("intermediate_size") : 0,
            layerKinds: kinds,
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false, as: "top-k renormalised")),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: true,
            expertFFNKey: "expert_feed_forward_length")
        config.qkNorm = .perHead
        return config
    }
}
