/// Mixtral (`MixtralForCausalLM`; in GGUF the `llama` architecture with experts).
///
/// Routing: softmax over all experts, top-k, renormalised over the k (always).
/// GGUF files from llama.cpp's converter have Q/K rows permuted so that adjacent-pair RoPE
/// reproduces the checkpoint's half-split rotation; HF checkpoints use half-split directly.
public enum MixtralFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.mixtral
    public static let hfModelTypes = ["mixtral"]
    public static let ggufArchitectures = ["llama"]

    /// 5.x maps `num_experts` to `num_local_experts`; 4.57 had no alias.
    public static let hfConfigClass = HFConfigClass("MixtralConfig", attributeMap: ["num_experts": "num_local_experts"])

    /// Defaults are MixtralConfig's, the same in transformers 4.57 and 5.x.
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.requireSiLU()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        _ = try hf.layerTypes(layers: layers)  // checked as 5.x checks it; this attention ignores it
        let rope = try hf.rope(defaultTheta: 1e6)
        return ModelConfiguration(
            architecture: .mixtral, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.kvHeads(default: 8, heads: heads),
            headDim: try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),  // null too: `head_dim or hidden // heads`
            ropeTheta: rope.theta, ropeScaling: rope.scaling, ropeStyle: .halfSplit,  // MixtralConfig.default_theta
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 4096 * 32, as: "context"),
            slidingWindow: try hf.optionalInt("sliding_window", default: nil, as: "sliding window"),
            expertCount: try hf.int("num_local_experts", default: 8, as: "experts"),
            expertsPerToken: try hf.int("num_experts_per_tok", default: 2, as: "top-k"),
            expertFFNSize: try hf.int("intermediate_size"),
            routing: .init(normalizeTopK: true),  // MixtralTopKRouter always renormalises; there is no key
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .adjacentPairs, normalizeTopK: true,
            expertFFNKey: "expert_feed_forward_length")
        guard config.expertCount > 0 else {
            throw ModelFormatError.notAModel(path: gguf.file.path, reason: "a llama model without experts is dense; SwiftMoE runs mixture-of-experts models")
        }
        config.slidingWindow = try gguf.optionalInt("attention.sliding_window")
        config.provenance?.append(.init(setting: "sliding window", value: config.slidingWindow.map { "\($0)" } ?? "none",
                                        origin: config.slidingWindow == nil ? .default : .file,
                                        source: config.slidingWindow == nil ? "llama.cpp" : "llama.attention.sliding_window"))
        return config
    }

    public static func hfName(_ name: WeightName) -> String {
        switch name {
        case let .router(l): return "model.layers.\(l).block_sparse_moe.gate.weight"
        case let .expertGate(l, e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w1.weight"
        case let .expertDown(l, e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w2.weight"
        case let .expertUp(l, e): return "model.layers.\(l).block_sparse_moe.experts.\(e).w3.weight"
        default: return name.commonHFName ?? name.ggufName
        }
    }
}
