/// The one description of a model's architecture that the runtime works from, filled by a
/// ``ModelFamily`` from either a GGUF file's metadata or a Hugging Face `config.json`.
///
/// Optional and defaulted keys are resolved by the family; ``validate(source:)`` checks the
/// values are consistent before anything is allocated from them.
public struct ModelConfiguration: Codable, Sendable, Equatable {
    public enum Architecture: String, Codable, Sendable, CaseIterable {
        case mixtral, qwen2moe, qwen3moe, olmoe, gptoss
    }

    /// How rotary embeddings pair the dimensions of a head.
    public enum RopeStyle: String, Codable, Sendable {
        /// Dimensions (2i, 2i+1) rotate together (llama.cpp "normal"; GGUF `llama`, whose converter
        /// permutes the Q/K rows to make this equal to the checkpoint's half-split rotation).
        case adjacentPairs
        /// Dimension i rotates with i + d/2 (transformers' `rotate_half`; llama.cpp "NeoX").
        case halfSplit
    }

    /// Where attention applies RMSNorm to queries and keys, if anywhere.
    public enum QKNorm: String, Codable, Sendable {
        case none
        /// One norm of `head_dim` weights applied to every head (Qwen3-MoE).
        case perHead
        /// One norm over the whole projection, all heads at once (OLMoE).
        case wholeProjection
    }

    public enum LayerKind: String, Codable, Sendable {
        case moe, dense
    }

    /// How the gate's logits become expert choices and weights (docs/design.md §2).
    public struct Routing: Codable, Sendable, Equatable {
        public enum Scoring: String, Codable, Sendable { case softmax }
        public var scoring: Scoring
        /// Renormalise the top-k probabilities to sum to one.
        public var normalizeTopK: Bool
        /// Factor applied to the final weights.
        public var scale: Float

        public init(scoring: Scoring = .softmax, normalizeTopK: Bool, scale: Float = 1) {
            self.scoring = scoring
            self.normalizeTopK = normalizeTopK
            self.scale = scale
        }
    }

    public var architecture: Architecture
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeTheta: Double
    /// RoPE scaling (YaRN, linear, llama3); nil for the default RoPE (and in stores written
    /// before scaling was supported).
    public var ropeScaling: RopeScaling?
    public var ropeStyle: RopeStyle
    /// Leading dimensions of each head that are rotated (the rest pass through).
    public var ropeDimensions: Int
    public var rmsNormEpsilon: Float
    /// Longest context the model was trained for.
    public var contextLength: Int
    public var qkNorm: QKNorm
    /// Q, K and V projections carry a bias (Qwen2-MoE).
    public var attentionBias: Bool
    /// Clamp Q, K and V to ±clip (OLMoE's `clip_qkv`).
    public var clipQKV: Float?
    /// Keys older than this many positions are masked (Mixtral's `sliding_window`).
    public var slidingWindow: Int?
    /// Which layers the window applies to (GPT-OSS alternates sliding and full layers); nil:
    /// every layer. A sliding layer's KV cache keeps only the window.
    public var slidingLayers: [Bool]?
    /// One learned logit per query head joins every softmax and takes its share of the
    /// probability mass, then is dropped (GPT-OSS's attention sinks).
    public var attentionSinks: Bool {
        get { extras?.attentionSinks ?? false }
        set { extras = Extras(attentionSinks: newValue, attentionOutputBias: attentionOutputBias, expertBiases: expertBiases) }
    }
    /// The attention output projection has a bias (GPT-OSS).
    public var attentionOutputBias: Bool {
        get { extras?.attentionOutputBias ?? false }
        set { extras = Extras(attentionSinks: attentionSinks, attentionOutputBias: newValue, expertBiases: expertBiases) }
    }
    /// The router and every expert's gate, up and down carry biases (GPT-OSS).
    public var expertBiases: Bool {
        get { extras?.expertBiases ?? false }
        set { extras = Extras(attentionSinks: attentionSinks, attentionOutputBias: attentionOutputBias, expertBiases: newValue) }
    }
    /// The three flags above, stored as one optional so stores written before them still decode.
    public var extras: Extras?
    public struct Extras: Codable, Sendable, Equatable {
        public var attentionSinks: Bool
        public var attentionOutputBias: Bool
        public var expertBiases: Bool
    }
    /// The experts' activation: nil for SwiGLU (`silu(gate) · up`); GPT-OSS's clamped variant
    /// `(clamp(up, ±limit) + 1) · g · sigmoid(alpha · g)` with `g = min(gate, limit)` otherwise.
    public var expertActivation: ClampedSwiGLU?

    /// GPT-OSS's expert activation constants.
    public struct ClampedSwiGLU: Codable, Sendable, Equatable {
        public var alpha: Float
        public var limit: Float
        public init(alpha: Float, limit: Float) {
            self.alpha = alpha
            self.limit = limit
        }
    }

    /// Per layer, the window a sliding layer's KV cache keeps (nil: every position).
    public var cacheWindows: [Int?] { (0..<layerCount).map { isSliding(layer: $0) ? slidingWindow : nil } }

    /// Whether layer `l` attends within ``slidingWindow`` only.
    public func isSliding(layer l: Int) -> Bool {
        guard slidingWindow != nil else { return false }
        guard let slidingLayers else { return true }
        return l >= 0 && l < slidingLayers.count && slidingLayers[l]
    }
    public var expertCount: Int
    public var expertsPerToken: Int
    /// Intermediate size of one routed expert.
    public var expertFFNSize: Int
    /// Intermediate size of the shared expert; 0 when there is none.
    public var sharedExpertFFNSize: Int
    /// The shared expert's output is scaled by sigmoid(shared gate · x) (Qwen2-MoE).
    public var sharedExpertGated: Bool
    /// Intermediate size of the MLP in dense layers; 0 when every layer is MoE.
    public var denseFFNSize: Int
    public var layerKinds: [LayerKind]
    public var routing: Routing
    public var tiedEmbeddings: Bool
    /// Where the values no tensor shape can check came from (file key or class default), in
    /// the order the family read them; `moe inspect` prints them. Nil in stores written before
    /// this was kept.
    public var provenance: [Provenance]?

    /// One configuration value and where it came from.
    public struct Provenance: Codable, Sendable, Equatable, CustomStringConvertible {
        public enum Origin: String, Codable, Sendable {
            /// Read from the file; `source` is the key (`rope_parameters.rope_theta`).
            case file
            /// Absent from the file; `source` names whose default it is (`Qwen3MoeConfig`).
            case `default`
        }
        public var setting: String
        public var value: String
        public var origin: Origin
        public var source: String

        public init(setting: String, value: String, origin: Origin, source: String) {
            self.setting = setting
            self.value = value
            self.origin = origin
            self.source = source
        }

        /// `rope theta 1000000 (file: rope_parameters.rope_theta)`, `top-k 8 (default of Qwen3MoeConfig)`.
        public var description: String {
            "\(setting) \(value) (\(origin == .file ? "file: " : "default of ")\(source))"
        }
    }

    public init(
        architecture: Architecture, vocabSize: Int, hiddenSize: Int, layerCount: Int, headCount: Int,
        kvHeadCount: Int, headDim: Int, ropeTheta: Double, ropeScaling: RopeScaling? = nil, ropeStyle: RopeStyle, ropeDimensions: Int? = nil,
        rmsNormEpsilon: Float, contextLength: Int, qkNorm: QKNorm = .none, attentionBias: Bool = false,
        clipQKV: Float? = nil, slidingWindow: Int? = nil, expertCount: Int, expertsPerToken: Int,
        expertFFNSize: Int, sharedExpertFFNSize: Int = 0, sharedExpertGated: Bool = false,
        denseFFNSize: Int = 0, layerKinds: [LayerKind]? = nil, routing: Routing, tiedEmbeddings: Bool
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.ropeStyle = ropeStyle
        self.ropeDimensions = ropeDimensions ?? headDim
        self.rmsNormEpsilon = rmsNormEpsilon
        self.contextLength = contextLength
        self.qkNorm = qkNorm
        self.attentionBias = attentionBias
        self.clipQKV = clipQKV
        self.slidingWindow = slidingWindow
        self.slidingLayers = nil
        self.extras = nil
        self.expertActivation = nil
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.expertFFNSize = expertFFNSize
        self.sharedExpertFFNSize = sharedExpertFFNSize
        self.sharedExpertGated = sharedExpertGated
        self.denseFFNSize = denseFFNSize
        // Clamped so an absurd count from a damaged file reaches validate() instead of allocating.
        self.layerKinds = layerKinds ?? Array(repeating: .moe, count: min(max(layerCount, 0), ModelConfiguration.limits.layers))
        self.routing = routing
        self.tiedEmbeddings = tiedEmbeddings
    }

    public var queryDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }
    public var moeLayerCount: Int { layerKinds.filter { $0 == .moe }.count }
    /// Indices of the MoE layers, in order.
    public var moeLayers: [Int] { layerKinds.indices.filter { layerKinds[$0] == .moe } }
    public var hasSharedExpert: Bool { sharedExpertFFNSize > 0 }

    /// Upper bounds that no real model comes near; values past them mean a damaged file.
    static let limits = (vocab: 1 << 22, hidden: 1 << 17, layers: 1 << 12, heads: 1 << 12, experts: 1 << 12, ffn: 1 << 20, context: 1 << 24)

    /// Checks that the values describe a model the executor can build.
    /// - Parameter source: the file or directory the values came from, for the error message.
    public func validate(source: String) throws {
        func fail(_ reason: String) -> ModelFormatError { .invalidConfig(path: source, reason: reason) }
        let l = ModelConfiguration.limits
        func check(_ value: Int, _ name: String, _ range: ClosedRange<Int>) throws {
            guard range.contains(value) else { throw fail("\(name) = \(value) is outside \(range.lowerBound)...\(range.upperBound)") }
        }
        try check(vocabSize, "vocab size", 1...l.vocab)
        try check(hiddenSize, "hidden size", 1...l.hidden)
        try check(layerCount, "layer count", 1...l.layers)
        try check(headCount, "attention heads", 1...l.heads)
        try check(kvHeadCount, "key/value heads", 1...headCount)
        try check(headDim, "head dimension", 2...4096)
        try check(contextLength, "context length", 1...l.context)
        guard headCount % kvHeadCount == 0 else {
            throw fail("\(headCount) attention heads cannot be shared evenly by \(kvHeadCount) key/value heads")
        }
        guard ropeDimensions % 2 == 0, ropeDimensions >= 0, ropeDimensions <= headDim else {
            throw fail("rotary dimensions \(ropeDimensions) must be even and at most the head dimension \(headDim)")
        }
        guard ropeTheta.isFinite, ropeTheta > 0 else { throw fail("rope theta \(ropeTheta) must be positive") }
        try ropeScaling?.validate(fail)
        guard rmsNormEpsilon.isFinite, rmsNormEpsilon >= 0 else { throw fail("RMS norm epsilon \(rmsNormEpsilon) must be non-negative") }
        guard layerKinds.count == layerCount else {
            throw fail("\(layerKinds.count) layer kinds for \(layerCount) layers")
        }
        if layerKinds.contains(.moe) {
            try check(expertCount, "expert count", 1...l.experts)
            try check(expertsPerToken, "experts per token", 1...expertCount)
            try check(expertFFNSize, "expert FFN size", 1...l.ffn)
        }
        if layerKinds.contains(.dense) {
            try check(denseFFNSize, "dense FFN size", 1...l.ffn)
        }
        try check(sharedExpertFFNSize, "shared expert FFN size", 0...l.ffn)
        if let slidingWindow { try check(slidingWindow, "sliding window", 1...l.context) }
        if let slidingLayers, slidingLayers.count != layerCount {
            throw fail("\(slidingLayers.count) sliding-window flags for \(layerCount) layers")
        }
        if let a = expertActivation, !(a.alpha.isFinite && a.limit.isFinite && a.limit > 0) {
            throw fail("clamped SwiGLU alpha \(a.alpha) and limit \(a.limit) must be finite, the limit positive")
        }
        if let clipQKV, !(clipQKV > 0) { throw fail("clip_qkv \(clipQKV) must be positive") }
    }
}
