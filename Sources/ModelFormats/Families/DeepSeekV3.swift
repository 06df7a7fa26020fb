/// DeepSeek-V3 / R1 and the models sharing its class (`DeepseekV3ForCausalLM`). GGUF files of these
/// models are llama.cpp's `deepseek2` architecture (``DeepSeekV2Family``).
///
/// Attention as DeepSeek-V2 (latent attention, compressed cache); RoPE rotates adjacent pairs when
/// `rope_interleave` (the default) and halves otherwise.
///
/// Routing (`DeepseekV3TopkRouter`, transformers 4.57 and 5.x): sigmoid scores; the per-expert
/// `e_score_correction_bias` is added to choose, not to weight; groups (`n_group`) score the sum of
/// their two best biased scores, the `topk_group` best stay, the others are masked to 0; top-k of
/// the biased scores; weights are the unbiased sigmoids, divided by their sum (+1e-20) if
/// `norm_topk_prob`, times `routed_scaling_factor`.
public enum DeepSeekV3Family: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.deepseek3
    public static let hfModelTypes = ["deepseek_v3"]
    public static let ggufArchitectures: [String] = []

    /// No `attribute_map` in 4.57 or 5.x.
    public static let hfConfigClass = HFConfigClass("DeepseekV3Config")

    /// Defaults are DeepseekV3Config's (4.57 and 5.x agree).
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        let interleave = try hf.bool("rope_interleave", default: true, as: "rope interleave")
        let routing = try sigmoidRouting(hf, groups: 8, used: 4, normalize: true, scale: 2.5)
        return try DeepSeekHF.configuration(
            hf, architecture: .deepseek3, routing: routing, ropeStyle: interleave ? .adjacentPairs : .halfSplit,
            defaults: .init(experts: 256, topK: 8, shared: 1, firstDense: 3, context: 4096, queryRank: 1536))
    }

    /// The sigmoid router with selection bias and groups of DeepSeek-V3 and GLM-4.5 (the same code in
    /// transformers), with the config class's defaults.
    static func sigmoidRouting(_ hf: HFConfigReader, groups: Int, used: Int, normalize: Bool, scale: Double) throws -> ModelConfiguration.Routing {
        let count = try hf.int("n_group", default: groups, as: "expert groups")
        let kept = try hf.int("topk_group", default: used, as: "expert groups used")
        return ModelConfiguration.Routing(
            scoring: .sigmoid, normalizeTopK: try hf.bool("norm_topk_prob", default: normalize, as: "top-k renormalised"),
            scale: Float(try hf.double("routed_scaling_factor", default: scale, as: "routed scaling factor")),
            groups: .init(count: count, used: kept, score: .topTwoSum, masking: .zero), selectionBias: true)
    }

    public static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        throw ModelFormatError.unknownArchitecture(gguf.architecture, known: DeepSeekV2Family.ggufArchitectures)
    }

    public static func hfName(_ name: WeightName) -> String { DeepSeekHF.hfName(name) }
}
