/// OLMoE (`OlmoeForCausalLM`, GGUF `olmoe`).
///
/// Routing: softmax, top-k, renormalised if `norm_topk_prob` (false in the released model;
/// llama.cpp hard-codes false). RMSNorm over the whole Q and K projections (all heads at
/// once) before RoPE; optional `clip_qkv` clamps Q, K and V.
public enum OLMoEFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.olmoe
    public static let hfModelTypes = ["olmoe"]
    public static let ggufArchitectures = ["olmoe"]

    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.rejectRopeScaling()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        return ModelConfiguration(
            architecture: .olmoe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden,
            layerCount: try hf.int("num_hidden_layers"),
            headCount: heads, kvHeadCount: try hf.int("num_key_value_heads", default: heads),
            headDim: heads > 0 ? hidden / heads : 0,
            ropeTheta: try hf.double("rope_theta", default: 10_000), ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5)),
            contextLength: try hf.int("max_position_embeddings", default: 4096),
            qkNorm: .wholeProjection, attentionBias: try hf.bool("attention_bias", default: false),
            clipQKV: try hf.optionalDouble("clip_qkv").map(Float.init),
            expertCount: try hf.int("num_experts", default: 64),
            expertsPerToken: try hf.int("num_experts_per_tok", default: 8),
            expertFFNSize: try hf.int("intermediate_size"),
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false)),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: false,
            expertFFNKey: "expert_feed_forward_length")
        config.qkNorm = .wholeProjection
        return config
    }
}
