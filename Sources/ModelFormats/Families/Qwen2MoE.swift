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

    /// No `attribute_map` in 4.57 or 5.x.
    public static let hfConfigClass = HFConfigClass("Qwen2MoeConfig")

    /// Defaults are Qwen2MoeConfig's, the same numbers in transformers 4.57 and 5.x; which layers
    /// slide differs between them (``slidingWindow(_:layers:)``).
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.requireSiLU()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        let experts = try hf.int("num_experts", default: 60, as: "experts")
        let kinds = try qwenLayerKinds(hf, layers: layers, experts: experts)
        let rope = try hf.rope(defaultTheta: 10_000)
        return ModelConfiguration(
            architecture: .qwen2moe, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.kvHeads(default: 16, heads: heads),
            // Qwen2MoeAttention: getattr(config, "head_dim", hidden_size // num_attention_heads)
            headDim: try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            ropeTheta: rope.theta, ropeScaling: rope.scaling, ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-6, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 32_768, as: "context"),
            attentionBias: try hf.bool("qkv_bias", default: true, as: "qkv bias"),
            slidingWindow: try slidingWindow(hf, layers: layers),
            expertCount: experts, expertsPerToken: try hf.int("num_experts_per_tok", default: 4, as: "top-k"),
            expertFFNSize: try hf.int("moe_intermediate_size"),
            sharedExpertFFNSize: try hf.int("shared_expert_intermediate_size", default: 5632, as: "shared expert ffn"),
            sharedExpertGated: true,
            denseFFNSize: kinds.contains(.dense) ? try hf.int("intermediate_size") : 0,
            layerKinds: kinds,
            routing: .init(normalizeTopK: try hf.bool("norm_topk_prob", default: false, as: "top-k renormalised")),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
    }

    /// The window when every layer slides, nil when none does. transformers 5.x slides the layers
    /// `layer_types` marks `sliding_attention`, and builds that list when the file has none: the
    /// even-numbered layers below `max_window_layers` (default 28), if `use_sliding_window`.
    /// 4.57 (eager and SDPA attention) slides every layer if `use_sliding_window`. The executor
    /// has one window for all layers, so a mix is refused.
    static func slidingWindow(_ hf: HFConfigReader, layers: Int) throws -> Int? {
        let use = try hf.optionalBool("use_sliding_window")
        let count = min(max(layers, 0), 1 << 12)
        var source = use == nil ? nil as String? : "use_sliding_window"
        let sliding: [Bool]
        if let types = try hf.layerTypes(layers: layers) {
            sliding = types.map { $0 == "sliding_attention" }
            source = "layer_types"
        } else if (hf.transformersMajorVersion ?? 5) >= 5 {
            let maxWindow = try hf.optionalInt("max_window_layers") ?? 28
            sliding = (0..<count).map { (use ?? false) && $0 % 2 == 0 && $0 < maxWindow }
        } else {
            sliding = Array(repeating: use ?? false, count: count)
        }
        guard sliding.contains(true) else {
            hf.record("sliding window", "none", key: source)
            return nil
        }
        guard use == true, let window = try hf.optionalInt("sliding_window", default: 4096, as: "sliding window"), window > 0 else {
            throw hf.invalid("\(source ?? "use_sliding_window") makes layers slide, but use_sliding_window is not true or sliding_window is not a positive number")
        }
        guard sliding.allSatisfy({ $0 }) else {
            throw hf.invalid("\(source == "layer_types" ? "layer_types" : "use_sliding_window with max_window_layers") gives some layers a sliding window and others full attention; only one kind for every layer is supported")
        }
        return window
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
