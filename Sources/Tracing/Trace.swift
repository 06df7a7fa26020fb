import ExpertStore
import Foundation

/// A recorded run: which experts every MoE layer chose for every token, how the expert store
/// served each request, and when layers computed and experts loaded (docs/trace-format.md).
///
/// Times are nanoseconds since the trace started. The model is not needed to read, export or
/// report a trace.
public struct Trace: Equatable, Sendable {
    /// The most experts per layer a trace may describe: more than any released MoE (256–384),
    /// small enough that the report's expert × expert tables stay a few megabytes.
    public static let maxExpertsPerLayer = 1024

    public var header: TraceHeader
    /// Forward passes in order.
    public var steps: [TraceStep]
    /// Every expert load (demand loads and prefetches), in completion order.
    public var loads: [TraceLoad]
    public var evictions: [TraceEviction]

    public init(header: TraceHeader, steps: [TraceStep] = [], loads: [TraceLoad] = [], evictions: [TraceEviction] = []) {
        self.header = header
        self.steps = steps
        self.loads = loads
        self.evictions = evictions
    }
}

/// What was run and how: the model's shape, the store's configuration, the workload.
public struct TraceHeader: Codable, Equatable, Sendable {
    public var model: String
    public var architecture: String
    public var layerCount: Int
    /// Model layers with routed experts, in order.
    public var moeLayers: [Int]
    public var expertCount: Int
    public var expertsPerToken: Int
    /// Bytes one expert takes in the pool (the average when sizes differ).
    public var expertBytes: Int
    /// Whether every expert has the same size (then pool sizes in experts are exact).
    public var uniformExperts: Bool
    /// Whether experts were paged through a `PagedExpertStore` (else there are no accesses).
    public var paged: Bool
    public var poolBytes: Int?
    /// `--memory`, if given.
    public var budget: Int?
    public var cachePolicy: String
    public var prefetch: String
    public var prefetchDepth: Int
    public var prefetchWidth: Int
    public var loaderThreads: Int
    public var threads: Int
    public var kernels: String
    /// `decode` (one token per step), `prefill` (a window per step) or `generate` (prompt, then decode).
    public var mode: String
    /// The prompt or text file the tokens came from.
    public var source: String
    /// Creation time, ISO 8601.
    public var created: String

    public init(model: String, architecture: String, layerCount: Int, moeLayers: [Int], expertCount: Int, expertsPerToken: Int,
                expertBytes: Int, uniformExperts: Bool, paged: Bool, poolBytes: Int? = nil, budget: Int? = nil, cachePolicy: String = "lru",
                prefetch: String = "none", prefetchDepth: Int = 1, prefetchWidth: Int = 0, loaderThreads: Int = 0, threads: Int = 1,
                kernels: String = "fast", mode: String = "decode", source: String = "", created: String = "") {
        self.model = model
        self.architecture = architecture
        self.layerCount = layerCount
        self.moeLayers = moeLayers
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.expertBytes = expertBytes
        self.uniformExperts = uniformExperts
        self.paged = paged
        self.poolBytes = poolBytes
        self.budget = budget
        self.cachePolicy = cachePolicy
        self.prefetch = prefetch
        self.prefetchDepth = prefetchDepth
        self.prefetchWidth = prefetchWidth
        self.loaderThreads = loaderThreads
        self.threads = threads
        self.kernels = kernels
        self.mode = mode
        self.source = source
        self.created = created
    }

    /// Pool capacity in experts (exact for equal sizes, by the average otherwise).
    public var poolExperts: Int? { poolBytes.map { expertBytes > 0 ? $0 / expertBytes : 0 } }
}

/// One forward pass: a prompt window (prefill) or one token (decode).
public struct TraceStep: Equatable, Sendable {
    public enum Kind: UInt8, Codable, Sendable {
        case prefill = 0, decode = 1
        public var name: String { self == .prefill ? "prefill" : "decode" }
    }
    public var kind: Kind
    /// Position of the first token in its sequence (0 starts a new sequence: empty KV cache).
    public var position: Int
    public var tokens: [Int]
    public var start: UInt64
    public var end: UInt64
    /// Every layer of the model, in order.
    public var layers: [TraceLayer]

    public init(kind: Kind, position: Int, tokens: [Int], start: UInt64 = 0, end: UInt64 = 0, layers: [TraceLayer] = []) {
        self.kind = kind
        self.position = position
        self.tokens = tokens
        self.start = start
        self.end = end
        self.layers = layers
    }

    /// Nanoseconds the executor waited for experts in this step.
    public var stall: UInt64 { layers.reduce(0) { $0 + $1.accesses.reduce(0) { $0 + $1.stall } } }
    public var duration: UInt64 { end >= start ? end - start : 0 }
}

/// One layer of one step.
public struct TraceLayer: Equatable, Sendable {
    public var layer: Int
    public var attentionStart: UInt64
    public var ffnStart: UInt64
    public var ffnEnd: UInt64
    /// The router's choice for each token of the step (empty for dense layers).
    public var routes: [TraceRoute]
    /// Requests to the expert store, in order (one per distinct expert in prefill).
    public var accesses: [TraceAccess]
    /// Prefetch requests the predictor made while this layer ran.
    public var prefetches: [TracePrefetch]

    public init(layer: Int, attentionStart: UInt64 = 0, ffnStart: UInt64 = 0, ffnEnd: UInt64 = 0, routes: [TraceRoute] = [],
                accesses: [TraceAccess] = [], prefetches: [TracePrefetch] = []) {
        self.layer = layer
        self.attentionStart = attentionStart
        self.ffnStart = ffnStart
        self.ffnEnd = ffnEnd
        self.routes = routes
        self.accesses = accesses
        self.prefetches = prefetches
    }
}

/// Experts chosen for one token at one layer, best first, with their router weights.
public struct TraceRoute: Equatable, Sendable, Codable {
    public var experts: [Int]
    public var weights: [Float]
    public init(experts: [Int], weights: [Float]) {
        self.experts = experts
        self.weights = weights
    }
}

/// One request to the expert store.
public struct TraceAccess: Equatable, Sendable {
    public typealias Outcome = ExpertStoreEvent.Outcome
    public var expert: Int
    public var outcome: Outcome
    /// First use of an expert a prefetch loaded.
    public var prefetched: Bool
    /// When the request was made.
    public var time: UInt64
    /// Nanoseconds the executor waited (a miss's load, or the rest of a late prefetch).
    public var stall: UInt64
    /// Bytes read and nanoseconds taken by the load that brought the expert in (this request's
    /// own load on a miss, the prefetch's on the first use of a prefetched expert; 0 otherwise).
    public var bytes: Int
    public var loadTime: UInt64

    public init(expert: Int, outcome: Outcome, prefetched: Bool = false, time: UInt64 = 0, stall: UInt64 = 0, bytes: Int = 0, loadTime: UInt64 = 0) {
        self.expert = expert
        self.outcome = outcome
        self.prefetched = prefetched
        self.time = time
        self.stall = stall
        self.bytes = bytes
        self.loadTime = loadTime
    }

    public var isHit: Bool { outcome != .miss }
}

/// Experts the predictor asked for, and those the store queued.
public struct TracePrefetch: Equatable, Sendable {
    public var requested: [ExpertKey]
    public var queued: [ExpertKey]
    public var time: UInt64
    public init(requested: [ExpertKey], queued: [ExpertKey], time: UInt64 = 0) {
        self.requested = requested
        self.queued = queued
        self.time = time
    }
}

/// One expert load.
public struct TraceLoad: Equatable, Sendable {
    public var key: ExpertKey
    public var prefetch: Bool
    /// 0: the executor thread (demand load); 1…: loader threads.
    public var thread: Int
    public var start: UInt64
    public var end: UInt64
    public var bytes: Int
    public var failed: Bool
    public init(key: ExpertKey, prefetch: Bool, thread: Int, start: UInt64, end: UInt64, bytes: Int, failed: Bool = false) {
        self.key = key
        self.prefetch = prefetch
        self.thread = thread
        self.start = start
        self.end = end
        self.bytes = bytes
        self.failed = failed
    }
    public var duration: UInt64 { end >= start ? end - start : 0 }
}

public struct TraceEviction: Equatable, Sendable {
    public var key: ExpertKey
    public var unusedPrefetch: Bool
    public var time: UInt64
    public init(key: ExpertKey, unusedPrefetch: Bool, time: UInt64) {
        self.key = key
        self.unusedPrefetch = unusedPrefetch
        self.time = time
    }
}

extension Trace {
    /// Tokens evaluated (all steps).
    public var tokenCount: Int { steps.reduce(0) { $0 + $1.tokens.count } }

    public var accessCount: Int { steps.reduce(0) { $0 + $1.layers.reduce(0) { $0 + $1.accesses.count } } }

    /// One request to the store as the executor makes it: recorded accesses when the run was
    /// paged, otherwise derived from the routes the way the executor would issue them (per
    /// layer, the distinct chosen experts in ascending order; a decode step's requests of one
    /// layer are pinned together).
    public struct Request: Equatable, Sendable {
        public var step: Int
        public var key: ExpertKey
        /// Requests with the same batch are held together (a decode step's layer).
        public var batch: Int
        /// The recorded outcome, if the run was paged.
        public var outcome: TraceAccess.Outcome?
    }

    public var requests: [Request] {
        var out: [Request] = []
        var batch = 0
        for (s, step) in steps.enumerated() {
            for layer in step.layers {
                if !layer.accesses.isEmpty {
                    for a in layer.accesses {
                        out.append(Request(step: s, key: ExpertKey(layer: layer.layer, expert: a.expert), batch: batch, outcome: a.outcome))
                        if step.kind == .prefill { batch += 1 }
                    }
                } else if !layer.routes.isEmpty && !header.paged {
                    let experts = Set(layer.routes.flatMap(\.experts)).sorted()
                    for e in experts {
                        out.append(Request(step: s, key: ExpertKey(layer: layer.layer, expert: e), batch: batch, outcome: nil))
                        if step.kind == .prefill { batch += 1 }
                    }
                }
                batch += 1
            }
        }
        return out
    }

    /// Checks that every index in the trace fits the header (layers, experts, route shapes).
    public func validate(path: String) throws {
        let h = header
        func bad(_ what: String) -> TraceError { .invalid(path: path, reason: what) }
        guard h.layerCount > 0, h.layerCount <= 1 << 16, h.expertCount >= 0, h.expertsPerToken >= 0,
              h.expertsPerToken <= max(h.expertCount, 1), h.moeLayers.allSatisfy({ $0 >= 0 && $0 < h.layerCount }), h.expertBytes >= 0 else {
            throw bad("the header's model shape is impossible (\(h.layerCount) layers, \(h.expertCount) experts, top-\(h.expertsPerToken))")
        }
        guard h.expertCount <= Trace.maxExpertsPerLayer else {
            throw bad("the header claims \(h.expertCount) experts per layer; traces hold at most \(Trace.maxExpertsPerLayer) (the report's expert × expert tables grow with the square)")
        }
        guard zip(h.moeLayers, h.moeLayers.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw bad("the header's MoE layers \(h.moeLayers.prefix(16)) are not strictly increasing (a layer listed twice?)")
        }
        func checkKey(_ k: ExpertKey, _ what: String) throws {
            guard k.layer >= 0, k.layer < h.layerCount, k.expert >= 0, k.expert < h.expertCount else {
                throw bad("\(what) names expert \(k.expert) of layer \(k.layer), outside \(h.layerCount) layers × \(h.expertCount) experts")
            }
        }
        for (s, step) in steps.enumerated() {
            guard step.position >= 0 else { throw bad("step \(s) has a negative position") }
            for layer in step.layers {
                guard layer.layer >= 0, layer.layer < h.layerCount else { throw bad("step \(s) has layer \(layer.layer) of \(h.layerCount)") }
                guard layer.routes.isEmpty || layer.routes.count == step.tokens.count else {
                    throw bad("step \(s) layer \(layer.layer) has \(layer.routes.count) routes for \(step.tokens.count) tokens")
                }
                for r in layer.routes {
                    guard r.experts.count == r.weights.count else { throw bad("step \(s) layer \(layer.layer): experts and weights differ in count") }
                    for e in r.experts { try checkKey(ExpertKey(layer: layer.layer, expert: e), "step \(s)'s route") }
                }
                for a in layer.accesses { try checkKey(ExpertKey(layer: layer.layer, expert: a.expert), "step \(s)'s access") }
                for p in layer.prefetches { for k in p.requested + p.queued { try checkKey(k, "step \(s)'s prefetch") } }
            }
        }
        for l in loads { try checkKey(l.key, "a load") }
        for e in evictions { try checkKey(e.key, "an eviction") }
    }
}

/// A trace file that cannot be read.
public enum TraceError: Error, Equatable, CustomStringConvertible {
    case cannotRead(path: String, reason: String)
    case notATrace(path: String)
    case unsupportedVersion(path: String, version: Int)
    case truncated(path: String, offset: Int, what: String)
    case checksumMismatch(path: String, expected: UInt64, found: UInt64)
    case invalid(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason): return "\(path): cannot read the trace: \(reason)"
        case let .notATrace(path): return "\(path): not a SwiftMoE trace (no MOETRACE magic and not JSONL with a header line); record one with moe trace"
        case let .unsupportedVersion(path, version): return "\(path): trace format version \(version) is not supported (this build reads version \(TraceCodec.version))"
        case let .truncated(path, offset, what): return "\(path): the trace ends at offset \(offset) inside \(what); the file is truncated"
        case let .checksumMismatch(path, expected, found):
            return "\(path): checksum mismatch (expected \(String(expected, radix: 16)), found \(String(found, radix: 16))); the file is damaged"
        case let .invalid(path, reason): return "\(path): invalid trace: \(reason)"
        }
    }
}
