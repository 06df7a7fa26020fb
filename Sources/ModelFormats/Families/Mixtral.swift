/// Mixtral (`MixtralForCausalLM`; in GGUF the `llama` architecture with experts).
///
/// Routing: softmax over all experts, top-k, renormalised over the k (always).
/// GGUF files from llama.cpp's converter have Q/K rows permuted so that adjacent-pair RoPE
/// reproduces the checkpoint's half-split rotation; HF checkpoints use half-split directly.
public enum MixtralFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.mixtral
    public static let hfModelTypes = ["mixtral"]
    public static let ggufArchitectures = ["llama"]

    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        try hf.rejectRopeScaling()
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        return ModelConfiguration(
            architecture: .mixtral, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.int("num_key_value_heads", default: heads),
            headDim: try hf.optionalInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            ropeTheta: try hf.double("rope_theta", default: 1e6), ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5)),
            contextLength: try hf.int("max_position_embeddings", default: 4096 * 32),
            slidingWindow: try hf.optionalInt("sliding_window"),
            expertCount: try hf.int("num_local_experts", default: 8),
            expertsPerToken: try hf.int("num_experts_per_tok", default: 2),
            expertFFNSize: try hf.int("intermediate_size"),
            routing: .init(normalizeTopK: true),
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false))
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            gguf, vocabSize: vocabSize, tied: tied, ropeStyle: .adjacentPairs, normalizeTopK: true,
            expertFFNKey: "expert_feed_forward_length")
        guard config.expertCount > 0 else {
            throw ModelFormatError.notAModel(path: gguf.file.path, reason: "a llama model without experts is dense; SwiftMoE runs mixture-of-experts models")
        }
        config.slidingWindow = try gguf.optionalInt("attention.sliding_window")
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
