import Foundation
import Executor
import ExpertStore
import ModelFormats
import Tokenizer

/// What `moe inspect` reports: the architecture and where the bytes are.
public struct ModelInspection: Codable, Sendable {
    public struct TypeUsage: Codable, Sendable {
        public var type: String
        public var tensors: Int
        public var bytes: Int
    }

    public var path: String
    public var format: String
    public var architecture: String
    public var configuration: ModelConfiguration
    public var layers: Int
    public var moeLayers: Int
    public var denseLayers: Int
    public var expertsPerLayer: Int
    public var expertsPerToken: Int
    public var sharedExpert: Bool
    public var tensorCount: Int
    public var tensorTypes: [TypeUsage]
    public var totalBytes: Int
    public var denseBytes: Int
    public var expertBytes: Int
    /// Bytes of one routed expert (gate + up + down) in each layer; 0 for dense layers.
    public var bytesPerExpert: [Int]
    /// Bytes a decode step reads from experts if every token routes to `expertsPerToken` experts.
    public var activeExpertBytesPerToken: Int
    /// KV-cache bytes one position takes over all layers with the default f16 cache: latent
    /// attention's compressed row (latent + rotary key), else keys and values of every kv head.
    public var kvBytesPerPosition: Int?
    /// What a plain cache of full per-head keys and values would take per position (f16); equal to
    /// ``kvBytesPerPosition`` without latent attention.
    public var uncompressedKVBytesPerPosition: Int?
    /// Latent attention's absorbed up-projections (`W_UKᵀ`, `W_UV`), kept in f32 beside the mapped
    /// weights; 0 without latent attention. The memory plan counts them with the dense weights.
    public var absorbedAttentionBytes: Int?

    /// The tokenizer the model ships, as `moe tokenize`/`run` would load it.
    public struct TokenizerSummary: Codable, Sendable {
        /// Which file defined it (`tokenizer.json`, `tokenizer.model (…)`, GGUF metadata).
        public var origin: String
        public var vocabularySize: Int
        public var bos: Int?
        public var eos: Int?
        /// Where the model's tokenizer files disagree, and which one was used.
        public var notes: [String]
    }
    /// Nil when the model has no tokenizer that loads; `tokenizerError` then says why.
    public var tokenizer: TokenizerSummary?
    public var tokenizerError: String?

    public init(source: ModelSource) throws {
        let c = source.configuration
        path = source.path
        switch source.container {
        case .gguf(let file): format = "gguf v\(file.version)"
        case .huggingFace: format = "huggingface safetensors"
        case .store(let store): format = "swiftmoe store v\(store.header.manifestLength > 0 ? Int(MoEStoreFile.version) : 0)"
        }
        architecture = c.architecture.rawValue
        configuration = c
        layers = c.layerCount
        moeLayers = c.moeLayerCount
        denseLayers = c.layerCount - c.moeLayerCount
        expertsPerLayer = c.expertCount
        expertsPerToken = c.expertsPerToken
        sharedExpert = c.hasSharedExpert
        let inventory = source.tensorInventory
        tensorCount = inventory.count
        var usage: [String: TypeUsage] = [:]
        for t in inventory {
            usage[t.type.description, default: TypeUsage(type: t.type.description, tensors: 0, bytes: 0)].tensors += 1
            usage[t.type.description]!.bytes += t.bytes
        }
        tensorTypes = usage.values.sorted { $0.bytes > $1.bytes }
        totalBytes = inventory.reduce(0) { $0 + $1.bytes }
        var perExpert: [Int] = []
        var expertTotal = 0
        for l in 0..<c.layerCount {
            guard c.layerKinds[l] == .moe else {
                perExpert.append(0)
                continue
            }
            var layerBytes = 0
            for e in 0..<c.expertCount {
                if case let .store(store) = source.container {
                    layerBytes += store.record(layer: l, expert: e)?.tensors.reduce(0) { $0 + $1.length } ?? 0
                    continue
                }
                for name in ExpertTensor.weightNames(layer: l, expert: e) {
                    layerBytes += try source.weight(name)?.data.count ?? 0
                }
            }
            perExpert.append(c.expertCount > 0 ? layerBytes / c.expertCount : 0)
            expertTotal += layerBytes
        }
        bytesPerExpert = perExpert
        expertBytes = expertTotal
        denseBytes = totalBytes - expertTotal
        activeExpertBytesPerToken = perExpert.reduce(0, +) * c.expertsPerToken
        kvBytesPerPosition = c.kvBytesPerPosition(elementSize: 2)
        uncompressedKVBytesPerPosition = c.uncompressedKVBytesPerPosition(elementSize: 2)
        absorbedAttentionBytes = c.latentAttention.map { c.layerCount * c.headCount * $0.kvRank * ($0.nopeHeadDim + $0.valueHeadDim) * 4 } ?? 0
    }

    /// Checks the model as loading it for a run would: every tensor the executor uses exists
    /// with the shape and type the configuration implies, every expert's tensors included.
    /// Throws the error a run would (so `moe inspect` does not call a model fine that
    /// `moe logits` refuses). Maps nothing new and reads only the norm vectors.
    public static func checkLoads(_ source: ModelSource) throws {
        var experts: (any ExpertProvider)? = nil
        if case .store = source.container {
            // A store's experts are records, checked by the catalog; the executor gets a pool
            // of the minimum size, which it does not touch until a forward pass.
            let catalog = try ExpertCatalog(source: source)
            experts = try PagedExpertStore(catalog: catalog, capacity: catalog.minimumPool(k: source.configuration.expertsPerToken),
                                           policy: .lru)
        }
        _ = try Transformer(source: source, experts: experts, options: ExecutorOptions(threads: 1))
    }

    /// Fills ``tokenizer`` (or ``tokenizerError``) by loading the model's tokenizer as
    /// `moe tokenize`/`run` would. Separate from `init` because it reads the tokenizer files:
    /// memory planning inspects the model too and must not touch more of it than it maps.
    public mutating func describeTokenizer() {
        do {
            let t = try Tokenizer(path: path)
            tokenizer = TokenizerSummary(origin: t.origin, vocabularySize: t.vocabularySize, bos: t.bosTokenId, eos: t.eosTokenId, notes: t.notes)
            tokenizerError = nil
        } catch {
            tokenizer = nil
            tokenizerError = "\(error)"
        }
    }

    /// Human-readable report.
    public var text: String {
        let c = configuration
        var lines: [String] = []
        lines.append("model        \(path)")
        lines.append("format       \(format)")
        lines.append("architecture \(architecture)")
        lines.append("layers       \(layers) (\(moeLayers) MoE, \(denseLayers) dense)")
        let sharedCount = c.sharedExpertCount.map { "\($0) shared experts as one MLP" } ?? "shared expert"
        lines.append("experts      \(expertsPerLayer) per MoE layer, top-\(expertsPerToken)\(sharedExpert ? " + \(sharedCount) (ffn \(c.sharedExpertFFNSize), always resident)" : "")")
        var routing = "\(c.routing.scoring.rawValue)"
        if c.routing.usesSelectionBias { routing += " + selection bias" }
        if let g = c.routing.groups, g.count > 1 { routing += ", best \(g.used) of \(g.count) groups (\(g.score == .max ? "best expert" : "sum of best two"))" }
        routing += ", top-k weights \(c.routing.normalizeTopK ? "renormalised" : "not renormalised")"
        if c.routing.scale != 1 { routing += ", × \(c.routing.scale)" }
        lines.append("routing      \(routing)")
        lines.append("hidden       \(c.hiddenSize), expert ffn \(c.expertFFNSize)\(c.denseFFNSize > 0 ? ", dense ffn \(c.denseFFNSize)" : "")")
        lines.append("attention    \(c.headCount) heads, \(c.kvHeadCount) kv heads, head dim \(c.headDim), rope \(c.ropeStyle.rawValue) theta \(c.ropeTheta)\(c.ropeScaling.map { " (\($0))" } ?? ""), qk-norm \(c.qkNorm.rawValue)")
        if let m = c.latentAttention {
            lines.append("latent attn  kv_lora_rank \(m.kvRank), q_lora_rank \(m.queryRank == 0 ? "none" : "\(m.queryRank)"), qk nope \(m.nopeHeadDim) + rope \(m.ropeHeadDim), v \(m.valueHeadDim); absorbed up-projections \(Units.formatBytes(absorbedAttentionBytes ?? 0)) f32")
        }
        if let kv = kvBytesPerPosition, let plain = uncompressedKVBytesPerPosition {
            lines.append("kv cache     \(Units.formatBytes(kv)) per position (f16)" + (kv == plain ? "" : "; a plain cache would take \(Units.formatBytes(plain)) (\(String(format: "%.1f", Double(plain) / Double(max(kv, 1))))× more)"))
        }
        lines.append("vocab        \(c.vocabSize)\(c.tiedEmbeddings ? " (tied embeddings)" : "")")
        lines.append("context      \(c.contextLength)")
        // Values no tensor shape checks: from the file (which key) or whose default.
        for (i, entry) in (c.provenance ?? []).enumerated() {
            lines.append((i == 0 ? "settings     " : "             ") + entry.description)
        }
        if c.provenance == nil { lines.append("settings     not recorded (a store written before they were kept)") }
        lines.append("tensors      \(tensorCount): " + tensorTypes.map { "\($0.type) \($0.tensors) (\(Units.formatBytes($0.bytes)))" }.joined(separator: ", "))
        lines.append("bytes        \(Units.formatBytes(totalBytes)) total = \(Units.formatBytes(denseBytes)) dense + \(Units.formatBytes(expertBytes)) experts")
        let distinct = Set(bytesPerExpert.filter { $0 > 0 })
        if distinct.count == 1, let one = distinct.first {
            lines.append("one expert   \(Units.formatBytes(one)) in every MoE layer")
        } else {
            lines.append("one expert   " + bytesPerExpert.enumerated().map { "L\($0.offset): \(Units.formatBytes($0.element))" }.joined(separator: ", "))
        }
        lines.append("per token    \(Units.formatBytes(activeExpertBytesPerToken)) of active expert weights")
        if let t = tokenizer {
            lines.append("tokenizer    \(t.origin), \(t.vocabularySize) tokens, BOS \(t.bos.map(String.init) ?? "none"), EOS \(t.eos.map(String.init) ?? "none")")
            for note in t.notes { lines.append("             note: \(note)") }
        } else if let tokenizerError {
            lines.append("tokenizer    none: \(tokenizerError)")
        }
        return lines.joined(separator: "\n")
    }
}
