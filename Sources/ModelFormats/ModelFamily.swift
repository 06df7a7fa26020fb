/// What the runtime must know about one model family: how to read its configuration from
/// either format and what its checkpoint calls each weight. One file per family
/// (`Families/*.swift`), one line per family in ``ModelFamilies/all``.
public protocol ModelFamily: Sendable {
    static var architecture: ModelConfiguration.Architecture { get }
    /// `model_type` values in `config.json`.
    static var hfModelTypes: [String] { get }
    /// `general.architecture` values in GGUF.
    static var ggufArchitectures: [String] { get }
    /// The transformers config class `config.json` is read as (its name and `attribute_map`).
    static var hfConfigClass: HFConfigClass { get }
    /// Fills the configuration from `config.json`: every key no tensor shape can check is read
    /// or takes exactly the default of ``hfConfigClass`` (docs/design.md §2).
    static func configuration(hf: HFConfigReader) throws -> ModelConfiguration
    /// Fills the configuration from GGUF metadata. `vocabSize` and `tied` come from the tensors.
    static func configuration(gguf: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration
    /// The checkpoint's name for a weight.
    static func hfName(_ name: WeightName) -> String
    /// The GGUF name of a weight where the architecture differs from ``WeightName/ggufName``
    /// (GPT-OSS's FFN norm is `post_attention_norm`). `.moe` stores always use `ggufName`.
    static func ggufName(_ name: WeightName) -> String
    /// A weight of a Hugging Face checkpoint that is not one tensor of the file as it stands
    /// (GPT-OSS's MXFP4 blocks and scales, its interleaved gate/up): built from the file's
    /// tensors; nil means "read `hfName` as is".
    static func hfTensor(_ name: WeightName, in directory: HFDirectory) throws -> TensorView?
}

extension ModelFamily {
    public static func hfName(_ name: WeightName) -> String { name.commonHFName ?? name.ggufName }
    public static func ggufName(_ name: WeightName) -> String { name.ggufName }
    public static func hfTensor(_ name: WeightName, in directory: HFDirectory) throws -> TensorView? { nil }

    /// Layer kinds from Qwen-style `mlp_only_layers` and `decoder_sparse_step` keys (both Qwen
    /// config classes default to `[]` and 1).
    static func qwenLayerKinds(_ hf: HFConfigReader, layers: Int, experts: Int) throws -> [ModelConfiguration.LayerKind] {
        let denseOnly = Set(try hf.intArray("mlp_only_layers", default: [], as: "mlp-only layers"))
        let step = try hf.int("decoder_sparse_step", default: 1, as: "sparse step")
        guard step >= 1 else {
            throw ModelFormatError.invalidConfig(path: hf.path, reason: "decoder_sparse_step must be at least 1, found \(step)")
        }
        return (0..<min(max(layers, 0), ModelConfiguration.limits.layers)).map { l in
            (!denseOnly.contains(l) && experts > 0 && (l + 1) % step == 0) ? .moe : .dense
        }
    }

    /// The keys every supported GGUF architecture shares, filled into a configuration that the
    /// family then adjusts. Keys llama.cpp requires are required; the others take llama.cpp's
    /// default (`normalizeTopK`: its value for the architecture), recorded in `provenance`.
    static func commonGGUFConfiguration(
        _ g: GGUFMetadataReader, vocabSize: Int, tied: Bool, ropeStyle: ModelConfiguration.RopeStyle,
        normalizeTopK: Bool, expertFFNKey: String, checkValueLength: Bool = true
    ) throws -> ModelConfiguration {
        let hidden = try g.int("embedding_length")
        let heads = try g.int("attention.head_count")
        let headDim = try g.optionalInt("attention.key_length") ?? (heads > 0 ? hidden / heads : 0)
        if checkValueLength, let valueLength = try g.optionalInt("attention.value_length"), valueLength != headDim {
            throw ModelFormatError.invalidMetadata(path: g.file.path, key: "\(g.architecture).attention.value_length", reason: "value length \(valueLength) differs from key length \(headDim); not supported")
        }
        let (ropeScaling, ropeNotes) = try g.ropeScaling()
        var provenance = ropeNotes
        func note<T>(_ setting: String, _ suffix: String, _ value: T, read: Bool) -> T {
            provenance.append(.init(setting: setting, value: (value as? Double).map(HFConfigReader.show) ?? "\(value)",
                                    origin: read ? .file : .default, source: read ? "\(g.architecture).\(suffix)" : "llama.cpp"))
            return value
        }
        let experts = try g.optionalInt("expert_count")
        let topK = try g.optionalInt("expert_used_count")
        let theta = g.value("rope.freq_base") == nil ? nil : try g.double("rope.freq_base", default: 0)
        let norm = try g.optionalBool("expert_weights_norm")
        var config = ModelConfiguration(
            architecture: architecture, vocabSize: vocabSize, hiddenSize: hidden,
            layerCount: try g.int("block_count"), headCount: heads,
            kvHeadCount: try g.optionalInt("attention.head_count_kv") ?? heads, headDim: headDim,
            ropeTheta: note("rope theta", "rope.freq_base", theta ?? 10_000, read: theta != nil), ropeStyle: ropeStyle,
            ropeDimensions: try g.optionalInt("rope.dimension_count") ?? headDim,
            rmsNormEpsilon: Float(note("rms eps", "attention.layer_norm_rms_epsilon", try g.requiredDouble("attention.layer_norm_rms_epsilon"), read: true)),
            contextLength: note("context", "context_length", try g.int("context_length"), read: true),
            expertCount: note("experts", "expert_count", experts ?? 0, read: experts != nil),
            expertsPerToken: note("top-k", "expert_used_count", topK ?? 0, read: topK != nil),
            expertFFNSize: try g.optionalInt(expertFFNKey) ?? (try g.optionalInt("feed_forward_length") ?? 0),
            routing: .init(normalizeTopK: note("top-k renormalised", "expert_weights_norm", norm ?? normalizeTopK, read: norm != nil)),
            tiedEmbeddings: tied)
        config.ropeScaling = ropeScaling
        config.provenance = provenance
        return config
    }
}

/// The registry of model families: adding a family is one file plus one line here.
public enum ModelFamilies {
    public static let all: [any ModelFamily.Type] = [
        MixtralFamily.self,
        Qwen2MoEFamily.self,
        Qwen3MoEFamily.self,
        OLMoEFamily.self,
        GptOssFamily.self,
        DeepSeekV2Family.self,
        DeepSeekV3Family.self,
        Glm4MoeFamily.self,
    ]

    public static func family(for architecture: ModelConfiguration.Architecture) -> any ModelFamily.Type {
        all.first { $0.architecture == architecture }!  // every Architecture case has a row
    }

    public static func family(hfModelType: String) throws -> any ModelFamily.Type {
        guard let f = all.first(where: { $0.hfModelTypes.contains(hfModelType) }) else {
            throw ModelFormatError.unknownArchitecture(hfModelType, known: all.flatMap { $0.hfModelTypes })
        }
        return f
    }

    public static func family(ggufArchitecture: String) throws -> any ModelFamily.Type {
        guard let f = all.first(where: { $0.ggufArchitectures.contains(ggufArchitecture) }) else {
            throw ModelFormatError.unknownArchitecture(ggufArchitecture, known: all.flatMap { $0.ggufArchitectures })
        }
        return f
    }
}
