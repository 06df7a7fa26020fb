/// The one description of a model's architecture that the runtime works from, filled by a
/// ``ModelFamily`` from either a GGUF file's metadata or a Hugging Face `config.json`.
///
/// Optional and defaulted keys are resolved by the family; ``validate(source:)`` checks the
/// values are consistent before anything is allocated from them.
public struct ModelConfiguration: Codable, Sendable, Equatable {
    public enum Architecture: String, Codable, Sendable, CaseIterable {
        case mixtral, qwen2moe, qwen3moe, olmoe, gptoss, deepseek2, deepseek3, glm4moe
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
        public enum Scoring: String, Codable, Sendable {
            /// Softmax over all experts (Mixtral, Qwen, OLMoE, DeepSeek-V2).
            case softmax
            /// An independent sigmoid per expert (DeepSeek-V3, GLM-4.5).
            case sigmoid
        }
        public var scoring: Scoring
        /// Renormalise the top-k probabilities to sum to one.
        public var normalizeTopK: Bool
        /// Factor applied to the final weights (`routed_scaling_factor`).
        public var scale: Float
        /// Experts are picked only inside the best groups (DeepSeek's group-limited top-k); nil: all experts.
        public var groups: Groups?
        /// A per-expert bias (the layer's ``WeightName/expertSelectionBias(_:)``) is added to the scores
        /// to choose experts, never to weight them (DeepSeek-V3's `e_score_correction_bias`).
        public var selectionBias: Bool?

        /// Group-limited selection: the experts split into `count` equal groups in index order, the
        /// `used` best groups by `score` stay, then top-k among their experts.
        public struct Groups: Codable, Sendable, Equatable {
            public enum Score: String, Codable, Sendable {
                /// The group's best expert score (transformers' DeepSeek-V2 `group_limited_greedy`).
                case max
                /// The sum of the group's two best selection scores (DeepSeek-V3, GLM-4.5, and llama.cpp for every family).
                case topTwoSum
            }
            /// What the experts of dropped groups score in the final top-k.
            public enum Masking: String, Codable, Sendable {
                /// 0, as transformers' `masked_fill(~mask, 0.0)` does: a dropped expert can still win
                /// over kept experts whose (biased) score is negative.
                case zero
                /// Never chosen (llama.cpp fills -inf).
                case exclude
            }
            public var count: Int
            public var used: Int
            public var score: Score
            public var masking: Masking

            public init(count: Int, used: Int, score: Score, masking: Masking) {
                self.count = count
                self.used = used
                self.score = score
                self.masking = masking
            }
        }

        public init(scoring: Scoring = .softmax, normalizeTopK: Bool, scale: Float = 1, groups: Groups? = nil, selectionBias: Bool = false) {
            self.scoring = scoring
            self.normalizeTopK = normalizeTopK
            self.scale = scale
            self.groups = groups
            self.selectionBias = selectionBias ? true : nil
        }

        public var usesSelectionBias: Bool { selectionBias ?? false }
    }

    /// DeepSeek's multi-head latent attention: queries (optionally through a low-rank `q_a`/`q_b`
    /// pair), one compressed latent `c_kv` (`kvRank`) plus one shared rotary key (`ropeHeadDim`)
    /// per position, expanded per head by `kv_b` (docs/design.md §3, *MLA cache*).
    public struct LatentAttention: Codable, Sendable, Equatable {
        /// `q_lora_rank`; 0 when queries come from one projection (`q_proj`, DeepSeek-V2-Lite).
        public var queryRank: Int
        /// `kv_lora_rank`: the latent's width.
        public var kvRank: Int
        /// `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim`.
        public var nopeHeadDim: Int
        public var ropeHeadDim: Int
        public var valueHeadDim: Int
        /// Epsilon of the `q_a`/`kv_a` RMSNorms (transformers: the class default 1e-6; llama.cpp: the model's).
        public var normEpsilon: Float
        /// Multiplies the softmax scale `1/sqrt(nope + rope)` (YaRN's mscale², 1 without scaling).
        public var softmaxScaleFactor: Float

        public init(queryRank: Int, kvRank: Int, nopeHeadDim: Int, ropeHeadDim: Int, valueHeadDim: Int, normEpsilon: Float, softmaxScaleFactor: Float = 1) {
            self.queryRank = queryRank
            self.kvRank = kvRank
            self.nopeHeadDim = nopeHeadDim
            self.ropeHeadDim = ropeHeadDim
            self.valueHeadDim = valueHeadDim
            self.normEpsilon = normEpsilon
            self.softmaxScaleFactor = softmaxScaleFactor
        }

        /// Floats cached per position and layer: the latent and the shared rotary key.
        public var cachedWidth: Int { kvRank + ropeHeadDim }
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
    /// Multi-head latent attention (DeepSeek-V2/V3); nil: grouped-query attention.
    public var latentAttention: LatentAttention?
    /// How many routed experts' worth the shared expert is (`n_shared_experts`; its FFN size is
    /// this times the expert FFN size); nil where the family states the size directly.
    public var sharedExpertCount: Int?
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
    /// Floats per position of one layer's key cache: a key per kv head, or MLA's latent and rotary key.
    public var kvDim: Int { latentAttention?.cachedWidth ?? kvHeadCount * headDim }
    /// Floats per position of one layer's value cache (0 with MLA: values come from the latent).
    public var valueCacheDim: Int { latentAttention == nil ? kvHeadCount * headDim : 0 }
    /// Width of the attention heads' output, the input of the output projection.
    public var attentionOutputDim: Int { latentAttention.map { headCount * $0.valueHeadDim } ?? queryDim }
    /// KV-cache bytes per position over all layers at `elementSize` bytes per float.
    public func kvBytesPerPosition(elementSize: Int) -> Int { layerCount * (kvDim + valueCacheDim) * elementSize }
    /// What a plain (uncompressed) cache would hold per position: full keys and values of every head.
    public func uncompressedKVBytesPerPosition(elementSize: Int) -> Int {
        guard let m = latentAttention else { return kvBytesPerPosition(elementSize: elementSize) }
        return layerCount * headCount * (m.nopeHeadDim + m.ropeHeadDim + m.valueHeadDim) * elementSize
    }
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
        guard routing.scale.isFinite, routing.scale > 0 else { throw fail("routed scaling factor \(routing.scale) must be positive") }
        if let g = routing.groups, layerKinds.contains(.moe) {
            guard g.count >= 1, expertCount % g.count == 0 else {
                throw fail("\(expertCount) experts cannot be split into \(g.count) equal groups")
            }
            guard (1...g.count).contains(g.used) else { throw fail("\(g.used) expert groups used out of \(g.count)") }
            guard g.used * (expertCount / g.count) >= expertsPerToken else {
                throw fail("\(g.used) groups of \(expertCount / g.count) experts cannot hold top-\(expertsPerToken)")
            }
            if g.score == .topTwoSum, expertCount / g.count < 2 {
                throw fail("groups of one expert cannot be scored by their two best experts")
            }
        }
        if let m = latentAttention {
            try check(m.kvRank, "kv_lora_rank", 1...l.hidden)
            try check(m.queryRank, "q_lora_rank", 0...l.hidden)
            try check(m.nopeHeadDim, "qk_nope_head_dim", 1...4096)
            try check(m.valueHeadDim, "v_head_dim", 1...4096)
            guard m.ropeHeadDim >= 2, m.ropeHeadDim % 2 == 0, m.ropeHeadDim <= 4096 else {
                throw fail("qk_rope_head_dim \(m.ropeHeadDim) must be even and at least 2")
            }
            guard headDim == m.nopeHeadDim + m.ropeHeadDim, ropeDimensions == m.ropeHeadDim else {
                throw fail("latent attention head dim \(headDim) must be qk_nope_head_dim + qk_rope_head_dim")
            }
            guard m.normEpsilon.isFinite, m.normEpsilon >= 0, m.softmaxScaleFactor.isFinite, m.softmaxScaleFactor > 0 else {
                throw fail("latent attention epsilon or softmax scale is out of range")
            }
        }
    }
}
