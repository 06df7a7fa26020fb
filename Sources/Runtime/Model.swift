import Executor
import ExpertStore
import Foundation
import ModelFormats
import Router

/// A loaded model, the entry point for apps: open a GGUF file or Hugging Face directory,
/// evaluate token sequences, generate.
///
/// ```swift
/// let model = try Model(path: "mixtral.gguf")
/// let logits = try model.logits(tokens: [1, 415, 2936])   // [position][vocab]
/// let continuation = try model.generate(tokens: [1, 415], maxNewTokens: 8)
/// ```
///
/// A model is `Sendable`: every stored property is immutable and `Sendable`. Two tasks may use
/// one model at once; its operations are serialized (``withExclusiveAccess(_:)``): forward
/// passes one at a time, a trace recording for its whole run.
public final class Model: Sendable {
    public let source: ModelSource
    public let transformer: Transformer
    /// The paging store when experts are paged (a `--memory` budget, or a `.moe` store).
    public let pagedExperts: PagedExpertStore?
    /// How the budget was spent, when there is one.
    public let memoryPlan: MemoryPlan?
    /// The longest context this model object will run (bounded by the budget's KV cache).
    public let maxContext: Int
    /// The paging settings it was opened with.
    public let memoryOptions: MemoryOptions
    /// The low-bit copies decode misses are computed from (`--on-miss lowbit`), if in use.
    public let missCopies: MissCopies?
    /// Serializes this model's operations (``withExclusiveAccess(_:)``).
    private let operations = OperationLock()

    /// Settings of expert paging.
    public struct MemoryOptions: Sendable {
        /// Bytes the whole process may keep resident; nil keeps every expert resident.
        public var budget: Int?
        public var cachePolicy: CachePolicyKind
        /// The longest context to plan the KV cache for (default: the model's, at most 4096).
        public var maxContext: Int?
        /// The longest prompt evaluated in one forward pass (planned scratch memory).
        public var promptChunk: Int
        /// How experts of the layers ahead are guessed and loaded during decode.
        public var prefetch: PredictorKind
        /// MoE layers ahead to prefetch.
        public var prefetchDepth: Int
        /// Experts prefetched per layer ahead (default: top-k + 1).
        public var prefetchWidth: Int?
        /// Path statistics from `moe calibrate` (default: MODEL.calibration.json if it exists).
        public var calibration: String?
        /// Threads that load prefetched experts.
        public var loaderThreads: Int
        /// Loader threads a paging store gets: at least one whatever the predictor, because prefill
        /// waves read the next experts ahead on it (docs/design.md §5).
        public var pagingLoaderThreads: Int { max(1, loaderThreads) }
        /// Caps the expert pool itself (with or without `budget`), as bytes or a fraction of
        /// all expert bytes.
        public var expertCache: ExpertCacheSize?
        /// Reads in flight per expert load (`--read-depth`; pieces of one expert read at once).
        public var readDepth = ReadQueue.defaultDepth
        /// What a decode step does on a miss: wait for the exact expert, or compute it from the
        /// store's low-bit copy while the exact one loads (lossy).
        public var onMiss: MissPolicy
        /// Bytes the caller keeps resident beside the model (a command's own data, such as `moe
        /// calibrate`'s statistics): the budget's plan takes them from the expert pool.
        public var reserved = 0

        public init(budget: Int? = nil, cachePolicy: CachePolicyKind = .auto, maxContext: Int? = nil, promptChunk: Int = 512,
                    prefetch: PredictorKind = .none, prefetchDepth: Int = 1, prefetchWidth: Int? = nil, calibration: String? = nil,
                    loaderThreads: Int = 1, expertCache: ExpertCacheSize? = nil, onMiss: MissPolicy = .exact) {
            self.onMiss = onMiss
            self.budget = budget
            self.cachePolicy = cachePolicy
            self.maxContext = maxContext
            self.promptChunk = promptChunk
            self.prefetch = prefetch
            self.prefetchDepth = prefetchDepth
            self.prefetchWidth = prefetchWidth
            self.calibration = calibration
            self.loaderThreads = loaderThreads
            self.expertCache = expertCache
        }
    }

    /// Opens a model. With `memory.budget`, experts are paged into a pool sized so the whole
    /// process stays under the budget (throws ``ExpertStoreError/budgetTooSmall(budget:minimum:detail:)``
    /// with the minimum if it cannot); without, GGUF and Hugging Face experts stay mapped and a
    /// `.moe` store pages into a pool that holds all of them.
    public init(path: String, options: ExecutorOptions = ExecutorOptions(), memory: MemoryOptions = MemoryOptions()) throws {
        var options = options
        options.promptChunk = options.promptChunk ?? memory.promptChunk
        let paging = memory.budget != nil || memory.expertCache != nil
        memoryOptions = memory
        source = try ModelSource(path: path, randomAccess: paging)
        let c = source.configuration
        maxContext = memory.context(for: c)
        var paged: PagedExpertStore? = nil
        var copies: MissCopies? = nil
        if memory.onMiss == .lowbit {
            guard case let .store(store) = source.container, let found = try MissCopies(store: store, slots: c.expertsPerToken) else {
                throw ModelFormatError.notAModel(path: path, reason: "--on-miss lowbit needs a store with miss copies (moe convert MODEL -o OUT.moe --miss-copy q2_K)")
            }
            copies = found
        }
        missCopies = copies
        if paging {
            let catalog = try ExpertCatalog(source: source)
            let loaders = memory.pagingLoaderThreads
            var capacity = catalog.totalBytes + ExpertPool.alignment
            if let budget = memory.budget {
                let plan = try MemoryPlan.make(budget: budget, source: source, catalog: catalog, options: options, maxPositions: maxContext,
                                               promptChunk: memory.promptChunk, loaderThreads: loaders,
                                               missCopyBuffers: (copies?.slotSize ?? 0) * (copies?.slotCount ?? 0), reserved: memory.reserved)
                memoryPlan = plan
                capacity = plan.pool
                options.promptChunk = plan.promptChunk
            } else {
                memoryPlan = nil
            }
            if let cache = memory.expertCache {
                let minimum = catalog.minimumPool(k: c.expertsPerToken)
                let bytes = cache.bytes(ofTotal: catalog.totalBytes, minimum: minimum)
                guard bytes >= minimum else { throw ExpertStoreError.poolTooSmall(needed: minimum, capacity: bytes) }
                capacity = min(capacity, bytes)
            }
            paged = try PagedExpertStore(catalog: catalog, capacity: capacity, policy: memory.cachePolicy, loaderThreads: loaders, readDepth: memory.readDepth)
        } else {
            memoryPlan = nil
            if case .store = source.container {
                let catalog = try ExpertCatalog(source: source)
                // Lowbit misses load the exact expert on a loader thread.
                paged = try PagedExpertStore(catalog: catalog, capacity: catalog.totalBytes + ExpertPool.alignment, policy: memory.cachePolicy,
                                             loaderThreads: copies == nil ? 0 : 1, readDepth: memory.readDepth)
            }
        }
        pagedExperts = paged
        var provider: (any ExpertProvider)? = paged
        if let paged, let copies { provider = LowBitOnMiss(store: paged, copies: copies) }
        transformer = try Transformer(source: source, experts: provider, options: options)
        if memory.prefetch == .auto, memory.calibration == nil, paged != nil {
            // The default: guesses with lookahead, and with the model's path statistics when they
            // load and match; a stale or foreign statistics file is ignored rather than fatal.
            let table = try? Model.pathStatistics(path: path, source: source, explicit: nil)
            transformer.predictor = try ExpertPredictor(kind: .auto, depth: memory.prefetchDepth,
                                                        width: memory.prefetchWidth ?? c.expertsPerToken + 1, table: table)
        } else if memory.prefetch != .none, paged != nil {
            transformer.predictor = try ExpertPredictor(kind: memory.prefetch, depth: memory.prefetchDepth,
                                                        width: memory.prefetchWidth ?? c.expertsPerToken + 1,
                                                        table: Model.pathStatistics(path: path, source: source, explicit: memory.calibration))
        }
    }

    /// The path statistics for a predictor: the store's own (validated like a file), else
    /// `explicit` or the sidecar `MODEL.calibration.json`; nil when there are none. Throws when
    /// they cannot be read or are for another model.
    static func pathStatistics(path: String, source: ModelSource, explicit: String?) throws -> TransitionTable? {
        let c = source.configuration
        var table: TransitionTable? = nil
        var origin = path
        let sidecar = Model.calibrationPath(for: path)
        if explicit == nil, case let .store(store) = source.container, let data = try store.section(TransitionTable.storeSection) {
            table = try TransitionTable.decode(data, path: "\(path) (calibration section)")
        } else if let file = explicit ?? (FileManager.default.fileExists(atPath: sidecar) ? sidecar : nil) {
            table = try TransitionTable.load(path: file)
            origin = file
        }
        if let loaded = table {
            let moeLayers = c.moeLayers
            guard loaded.layers == moeLayers, loaded.expertCount == c.expertCount else {
                throw PredictorError.mismatch(path: origin, reason: "it has \(loaded.layers.count) MoE layers × \(loaded.expertCount) experts, the model \(moeLayers.count) × \(c.expertCount)")
            }
        }
        return table
    }

    /// Paging figures of the run so far: the store's counters, the predictor's accuracy, and
    /// Belady's MIN hit rate for the same access sequence at the same capacity (in experts of
    /// the average size; exact for equal-size experts, a bound otherwise).
    public struct PagingReport: Codable, Sendable {
        public var metrics: ExpertStoreMetrics?
        public var beladyHitRate: Double?
        public var capacityExperts: Int?
        public var prediction: PredictionStats?
        public var predictionPrecision: Double?
        public var predictionRecall: Double?
    }

    public func pagingReport() -> PagingReport {
        var report = PagingReport()
        guard let store = pagedExperts else { return report }
        report.metrics = store.metrics
        // Replay every access since the store opened (it started empty, as MIN does) and count
        // MIN's hits over the part the metrics cover, so both start from the same state.
        let log = store.accessLog
        let from = min(store.measuredFrom, log.count)
        if log.count > from {
            let sizes = log.compactMap { store.catalog.entry($0).map { ExpertPool.rounded($0.decodedLength) } }
            let average = sizes.reduce(0, +) / max(sizes.count, 1)
            let capacity = average > 0 ? store.pool.capacity / average : 0
            report.capacityExperts = capacity
            let outcomes = CacheSimulator.belady(log, capacity: capacity).outcomes[from...]
            report.beladyHitRate = Double(outcomes.filter { $0 }.count) / Double(outcomes.count)
        }
        if let predictor = transformer.predictor, predictor.kind != .none {
            let p = transformer.predictionStats
            report.prediction = p
            report.predictionPrecision = p.precision()
            report.predictionRecall = p.recall()
        }
        return report
    }

    /// A cap on the expert pool: bytes, or a fraction of the model's expert bytes.
    public enum ExpertCacheSize: Sendable, Equatable {
        case bytes(Int)
        case fraction(Double)
        /// Just one layer's active experts: load on demand, no cache (the EdgeMoE baseline).
        case minimum

        public func bytes(ofTotal total: Int, minimum: Int = 0) -> Int {
            switch self {
            case let .bytes(b): return b
            case let .fraction(f): return Int(Double(total) * f)
            case .minimum: return minimum
            }
        }

        /// `4MB`, `1.5GiB`, `25%`, `min`.
        public init?(_ text: String) {
            if text == "min" {
                self = .minimum
            } else if text.hasSuffix("%") {
                guard let p = Double(text.dropLast()), p > 0, p <= 100 else { return nil }
                self = .fraction(p / 100)
            } else {
                guard let b = Units.parseBytes(text), b > 0 else { return nil }
                self = .bytes(b)
            }
        }
    }

    /// Where `moe calibrate` writes a model's path statistics by default.
    public static func calibrationPath(for modelPath: String) -> String {
        (modelPath.hasSuffix("/") ? String(modelPath.dropLast()) : modelPath) + ".calibration.json"
    }

    /// Whether `--prefetch path/hybrid` would find path statistics for the model at `path`.
    public static func hasCalibration(path: String, explicit: String?) -> Bool {
        if let explicit { return FileManager.default.fileExists(atPath: explicit) }
        if FileManager.default.fileExists(atPath: calibrationPath(for: path)) { return true }
        if let source = try? ModelSource(path: path), case let .store(store) = source.container, (try? store.section(TransitionTable.storeSection)) != nil {
            return true
        }
        return false
    }

    public var configuration: ModelConfiguration { source.configuration }

    /// The words every summary carries when a run is lossy (`--on-miss lowbit`), nil otherwise:
    /// "LOSSY: --on-miss lowbit, 12 of 40 misses computed from q2_K copies (1.2 MiB read)".
    public var lossyLabel: String? {
        guard let copies = missCopies, let m = pagedExperts?.metrics else { return nil }
        return "LOSSY: --on-miss lowbit, \(m.lowbitMisses) of \(m.misses) misses computed from \(copies.type) copies (\(Units.formatBytes(m.lowbitBytesRead)) read)"
    }

    /// Runs `body` while no other operation on this model runs. Every forward pass of
    /// ``forward(tokens:cache:logits:observer:)`` (so every call of `Model`, `Session`,
    /// `QualityProbe` that runs the transformer) takes this lock, and `recordTrace` holds it for
    /// its whole run, because its hooks on the transformer and the store must see its own passes
    /// only. So two tasks that share a model are serialized: pass by pass, and a trace run by
    /// run. Reentrant on one thread: `body` may call the model again.
    public func withExclusiveAccess<R>(_ body: () throws -> R) rethrows -> R {
        try operations.run(body)
    }

    /// One forward pass of ``transformer`` over `tokens`, after the positions `cache` holds,
    /// serialized with the model's other operations (``withExclusiveAccess(_:)``).
    public func forward(tokens: [Int], cache: KVCache, logits selection: Transformer.LogitsSelection = .all,
                        observer: RoutingObserver? = nil) throws -> [Float] {
        try withExclusiveAccess { try transformer.forward(tokens: tokens, cache: cache, logits: selection, observer: observer) }
    }

    /// Logits of every position of `tokens` evaluated from an empty context, and the experts
    /// every MoE layer chose for every token (`routing[layer][position]`; empty for dense layers).
    public func evaluate(tokens: [Int]) throws -> (logits: [[Float]], routing: [[[ExpertChoice]]]) {
        let c = configuration
        var routing = [[[ExpertChoice]]](repeating: [], count: c.layerCount)
        for l in 0..<c.layerCount where c.layerKinds[l] == .moe {
            routing[l] = Array(repeating: [], count: tokens.count)
        }
        let flat = try forward(tokens: tokens, cache: try makeCache(tokens.count)) { layer, position, choices in
            routing[layer][position] = choices
        }
        let logits = stride(from: 0, to: flat.count, by: c.vocabSize).map { Array(flat[$0..<($0 + c.vocabSize)]) }
        return (logits, routing)
    }

    /// Logits of every position of `tokens`, `[position][vocab]`.
    public func logits(tokens: [Int]) throws -> [[Float]] { try evaluate(tokens: tokens).logits }

    /// Greedy continuation: evaluates `tokens`, then appends the most likely token `maxNewTokens`
    /// times (or until `stop` returns true for a new token). Returns only the new tokens.
    public func generate(tokens: [Int], maxNewTokens: Int, stop: (Int) -> Bool = { _ in false }) throws -> [Int] {
        guard maxNewTokens > 0 else { return [] }
        let cache = try makeCache(tokens.count + maxNewTokens)
        var logits = try forward(tokens: tokens, cache: cache, logits: .last)
        var generated: [Int] = []
        while true {
            let next = Model.argmax(logits)
            generated.append(next)
            if generated.count == maxNewTokens || stop(next) { break }
            logits = try forward(tokens: [next], cache: cache, logits: .last)
        }
        return generated
    }

    /// A KV cache for `positions` tokens; throws if that is more than ``maxContext``.
    public func makeCache(_ positions: Int) throws -> KVCache {
        guard positions <= maxContext else { throw ExecutorError.contextFull(needed: positions, limit: maxContext) }
        return transformer.makeCache(maxPositions: positions)
    }

    /// Index of the largest value (the first one on ties).
    public static func argmax(_ values: [Float]) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}
