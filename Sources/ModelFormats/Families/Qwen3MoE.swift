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

    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.rejectRopeScaling()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        let experts = try hf.int("num_experts", default: 128)
        let kinds = try qwenLayerKinds(hf, layers: layers, experts: experts)
        let window = try hf.bool("use_sliding_window", default: false) ? try hf.optionalInt("sliding_window") : nil
        return ModelConfiguration(
            architecture: .qwen3moe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.int("num_key_value_heads", default: heads),
            headDim: try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            ropeTheta: try hf.double("rope_theta", default: 10_000), ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-6)),
            contextLength: try hf.int("max_position_embeddings", default: 32_768),
            qkNorm: .perHead, attentionBias: try hf.bool("attention_bias", default: false),
            slidingWindow: window,
            expertCount: experts, expertsPerToken: try hf.int("num_experts_per_tok", default: 8),
            expertFFNSize: try hf.int("moe_intermediate_size"),
            denseFFNSize: kinds.contains(.dense) ? try hf.int("intermediate_size") : 0,
            layerKinds: kinds,
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false)),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: true,
            expertFFNKey: "expert_feed_forward_length")
        config.qkNorm = .perHead
        return config
    }
}
