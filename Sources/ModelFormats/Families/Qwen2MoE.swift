/// Qwen2-MoE / Qwen1.5-MoE (`Qwen2MoeForCausalLM`, GGUF `qwen2moe`).
///
/// Routing: softmax, top-k, renormalised only if `norm_topk_prob` (false in the released
/// models; llama.cpp hard-codes false, we follow the file). A shared expert runs on every
/// token, scaled by sigmoid(shared_expert_gate · x). Q/K/V projections have biases.
/// Layers can be dense (`mlp_only_layers`, `decoder_sparse_step`).
public enum Qwen2MoEFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.qwen2moe
    public static let hfModelTypes = ["qwen2_moe"]
    public static let ggufArchitectures = ["qwen2moe"]

    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.rejectRopeScaling()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        let experts = try hf.int("num_experts", default: 60)
        let kinds = try qwenLayerKinds(hf, layers: layers, experts: experts)
        let window = try hf.bool("use_sliding_window", default: false) ? try hf.optionalInt("sliding_window") : nil
        return ModelConfiguration(
            architecture: .qwen2moe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.int("num_key_value_heads", default: heads),
            headDim: heads > 0 ? hidden / heads : 0,
            ropeTheta: try hf.double("rope_theta", default: 10_000), ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-6)),
            contextLength: try hf.int("max_position_embeddings", default: 32_768),
            attentionBias: try hf.bool("qkv_bias", default: true),
            slidingWindow: window,
            expertCount: experts, expertsPerToken: try hf.int("num_experts_per_tok", default: 4),
            expertFFNSize: try hf.int("moe_intermediate_size"),
            sharedExpertFFNSize: try hf.int("shared_expert_intermediate_size", default: 0),
            sharedExpertGated: true,
            denseFFNSize: kinds.contains(.dense) ? try hf.int("intermediate_size") : 0,
            layerKinds: kinds,
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false)),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: false,
            expertFFNKey: "expert_feed_forward_length")
        config.attentionBias = true
        config.sharedExpertFFNSize = try gguf.optionalInt("expert_shared_feed_forward_length") ?? 0
        config.sharedExpertGated = true
        return config
    }
}
