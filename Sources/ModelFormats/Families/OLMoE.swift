/// OLMoE (`OlmoeForCausalLM`, GGUF `olmoe`).
///
/// Routing: softmax, top-k, renormalised if `norm_topk_prob` (false in the released model;
/// llama.cpp hard-codes false). RMSNorm over the whole Q and K projections (all heads at
/// once) before RoPE; optional `clip_qkv` clamps Q, K and V.
public enum OLMoEFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.olmoe
    public static let hfModelTypes = ["olmoe"]
    public static let ggufArchitectures = ["olmoe"]

    /// 5.x maps `num_local_experts` to `num_experts`; 4.57 had no alias.
    public static let hfConfigClass = HFConfigClass("OlmoeConfig", attributeMap: ["num_local_experts": "num_experts"])

    /// Defaults are OlmoeConfig's, the same in transformers 4.57 and 5.x.
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.requireSiLU()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        _ = try hf.layerTypes(layers: layers)  // checked as 5.x checks it; this attention ignores it
        let headDim = heads > 0 ? hidden / heads : 0
        // 4.57 ignores head_dim; 5.x reads it, but its q/k norms are sized from hidden_size / heads.
        if let stated = try hf.optionalInt("head_dim"), stated != headDim {
            throw hf.invalid("head_dim \(stated) differs from hidden_size / num_attention_heads = \(headDim), which OLMoE's q/k norms assume")
        }
        // OlmoeConfig has no sliding window (`getattr(config, "sliding_window", None)`); a file that
        // names one gets it only from some attention implementations, so it is refused.
        if let window = try hf.optionalInt("sliding_window") {
            throw hf.invalid("sliding_window \(window) is not supported for OLMoE")
        }
        hf.record("sliding window", "none", key: nil)
        guard try hf.optionalBool("attention_bias") != true else {
            throw hf.invalid("attention_bias true (biases on q, k, v and o projections) is not supported yet")
        }
        let rope = try hf.rope(defaultTheta: 10_000)
        return ModelConfiguration(
            architecture: .olmoe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden,
            layerCount: layers,
            headCount: heads, kvHeadCount: try hf.kvHeads(default: heads, heads: heads),  // OlmoeConfig: None = heads
            headDim: headDim,
            ropeTheta: rope.theta, ropeScaling: rope.scaling, ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 4096, as: "context"),
            qkNorm: .wholeProjection,
            clipQKV: try hf.optionalDouble("clip_qkv", default: nil, as: "clip qkv").map(Float.init),
            expertCount: try hf.int("num_experts", default: 64, as: "experts"),
            expertsPerToken: try hf.int("num_experts_per_tok", default: 8, as: "top-k"),
            expertFFNSize: try hf.int("intermediate_size"),
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false, as: "top-k renormalised")),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: false,
            expertFFNKey: "expert_feed_forward_length")
        config.qkNorm = .wholeProjection
        return config
    }
}
