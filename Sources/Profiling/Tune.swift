import Dispatch
import Executor
import ExpertStore
import Foundation
import ModelFormats
import Router
import Runtime
import Synchronization
import Tracing
import Tuning

/// What `moe tune` replays and how (docs/tuning.md).
public struct TuneOptions: Sendable {
    /// `--memory`: the recommended pool must fit under it (nil: any size up to all-resident).
    public var budget: Int?
    public var executor: ExecutorOptions
    /// Context, prefetch depth/width, loader threads and calibration for the runs (budget, pool
    /// size, policy and predictor are what tune varies).
    public var memory: Model.MemoryOptions
    public var policies: [CachePolicyKind] = CachePolicyKind.allCases
    /// Predictors to measure and replay (`none` is always included).
    public var prefetchKinds: [PredictorKind] = [.none, .lookahead]
    /// Tokens of `--text` to trace, and the window (KV cache reset) they are evaluated in.
    public var tokens: Int = 1024
    public var window: Int = 512
    /// Pick the smallest pool within this fraction of the fastest projected speed.
    public var tolerance: Double = 0.05
    /// Tokens of the verification run (0: skip it).
    public var verifyTokens: Int = 256
    /// At most this many pool sizes (evenly spaced when there are more).
    public var maxSizes: Int = 64

    public init(budget: Int? = nil, executor: ExecutorOptions = ExecutorOptions(), memory: Model.MemoryOptions = Model.MemoryOptions()) {
        self.budget = budget
        self.executor = executor
        self.memory = memory
    }
}

/// Everything `moe tune` found: the sweep, the cost model, the recommendation and its check.
public struct TuneResult: Codable, Sendable {
    public struct Verification: Codable, Sendable {
        public var tokens: Int
        public var projectedTokensPerSecond: Double
        public var measuredTokensPerSecond: Double
        /// The replay's hit rate on the verification run's own requests, and the run's.
        public var projectedHitRate: Double
        public var measuredHitRate: Double
        /// Requests on which replay and run disagreed (0 is expected without prefetching).
        public var disagreements: Int
        /// The parts of the time: compute (projected from the traced workload, measured as the
        /// run's wall time minus its waits) and waiting for experts (projected misses × load
        /// time + prefetch cost; measured stall). On a busy machine compute is the noisy part.
        public var projectedComputeSeconds: Double
        public var measuredComputeSeconds: Double
        public var projectedWaitSeconds: Double
        public var measuredWaitSeconds: Double
    }
    public var model: String
    public var tokens: Int
    public var requests: Int
    public var expertBytes: Int
    public var totalExperts: Int
    public var minimumExperts: Int
    /// Largest pool the budget allows, in experts, per predictor (loader threads take budget too).
    public var budgetExperts: [String: Int]
    public var memoryPlan: MemoryPlan?
    public var cost: CostModel
    public var sweepSeconds: Double
    public var points: [SweepPoint]
    public var recommendation: Recommendation
    public var configuration: RunConfiguration
    public var verification: Verification?

    /// The recommended options as `moe run` flags.
    public var commandLine: String {
        (["moe", "run", model.contains(" ") ? "'\(model)'" : model] + configuration.arguments + ["\"PROMPT\""]).joined(separator: " ")
    }
}

public enum TuneError: Error, CustomStringConvertible {
    case noTokens
    case notPaged(String)
    case nothingFits(budget: Int, detail: String)

    public var description: String {
        switch self {
        case .noTokens: return "the text has no tokens to trace"
        case let .notPaged(model): return "\(model) has no routed experts to page"
        case let .nothingFits(budget, detail): return "no pool size fits --memory \(budget) bytes: \(detail)"
        }
    }
}

extension Model {
    /// Tunes the expert cache of the model at `path` for a workload: a text (traced here, once
    /// per predictor, in decode mode) or an earlier trace. Progress lines go to `progress`.
    public static func tune(path: String, text: [Int]? = nil, trace: Trace? = nil, source: String, options: TuneOptions,
                            progress: @escaping @Sendable (String) -> Void = { _ in }) throws -> TuneResult {
        // Plan the budget first, in a process that holds nothing else yet (RSS is its baseline).
        let modelSource = try ModelSource(path: path, randomAccess: true)
        let c = modelSource.configuration
        guard c.expertCount > 0, c.layerKinds.contains(.moe) else { throw TuneError.notPaged(path) }
        let catalog = try ExpertCatalog(source: modelSource)
        let moeLayers = c.moeLayers
        let sizes = moeLayers.flatMap { l in (0..<c.expertCount).compactMap { catalog.entry(ExpertKey(layer: l, expert: $0)).map { ExpertPool.rounded($0.decodedLength) } } }
        let expertBytes = sizes.reduce(0, +) / max(sizes.count, 1)
        let totalExperts = sizes.count
        let minimumExperts = max(c.expertsPerToken, (catalog.minimumPool(k: c.expertsPerToken) + expertBytes - 1) / max(expertBytes, 1))
        let maxContext = options.memory.context(for: c)
        var budgetExperts: [String: Int] = [:]
        var plan: MemoryPlan? = nil
        let kinds = [PredictorKind.none] + options.prefetchKinds.filter { $0 != .none }
        if let budget = options.budget {
            for kind in kinds {
                let loaders = options.memory.pagingLoaderThreads
                let p: MemoryPlan
                do {
                    p = try MemoryPlan.make(budget: budget, source: modelSource, catalog: catalog, options: options.executor, maxPositions: maxContext,
                                            promptChunk: options.memory.promptChunk, loaderThreads: loaders)
                } catch let error as ExpertStoreError {
                    if kind == .none { throw TuneError.nothingFits(budget: budget, detail: "\(error)") }
                    continue
                }
                if kind == .none { plan = p }
                budgetExperts[kind.rawValue] = min(totalExperts, p.pool / max(expertBytes, 1))
            }
        }

        // The workloads: one trace per predictor (same routing, each with its own prefetch requests).
        var traces: [String: Trace] = [:]
        let probeExperts = min(max(minimumExperts, totalExperts / 4), budgetExperts["none"] ?? totalExperts)
        if let trace {
            let h = trace.header
            guard h.layerCount == c.layerCount, h.expertCount == c.expertCount, h.moeLayers == moeLayers else {
                throw TraceError.invalid(path: source, reason: "it was recorded on a model with \(h.layerCount) layers × \(h.expertCount) experts, not \(path) (\(c.layerCount) × \(c.expertCount))")
            }
            traces[trace.header.prefetch == "none" || trace.steps.allSatisfy({ $0.layers.allSatisfy { $0.prefetches.isEmpty } }) ? "none" : trace.header.prefetch] = trace
        } else {
            guard let text, !text.isEmpty else { throw TuneError.noTokens }
            let tokens = Array(text.prefix(options.tokens))
            for kind in kinds {
                var memory = options.memory
                memory.budget = nil
                memory.expertCache = .bytes(probeExperts * expertBytes)
                memory.cachePolicy = .lru
                memory.prefetch = kind
                let model = try Model(path: path, options: options.executor, memory: memory)
                let start = Date()
                traces[kind.rawValue] = try model.recordTrace(.text(tokens: tokens, mode: .decode, window: min(options.window, model.maxContext)), source: source) { done, total in
                    if done % 64 == 0 || done == total {
                        progress(String(format: "tracing %@ (pool %d experts, prefetch %@): %d/%d tokens, %.1f s", path, probeExperts, kind.rawValue, done, total,
                                        Date().timeIntervalSince(start)))
                    }
                }
            }
        }
        guard let base = traces["none"] ?? traces.values.first else { throw TuneError.noTokens }

        // The cost model: compute and demand-load time from the run without prefetching, each
        // predictor's prefetch cost from its own run.
        var fallbackLoad: Double? = nil
        if TraceAnalysis(base).summary.demandLoadSeconds == nil {
            fallbackLoad = try measureLoadSeconds(catalog: catalog, samples: 16)
        }
        var cost = CostModel.measure(base, fallbackLoadSeconds: fallbackLoad)
        cost.expertBytes = expertBytes
        for (kind, t) in traces where kind != "none" { cost.addPrefetchCost(from: t) }

        // The sweep.
        var workloads: [String: TuningWorkload] = [:]
        for (kind, t) in traces {
            let w = TuningWorkload(trace: t)
            workloads[kind] = w
        }
        if workloads["none"] == nil, let w = workloads.values.first {
            var plain = w.sequence
            plain.prefetches = []
            workloads["none"] = TuningWorkload(sequence: plain, tokens: w.tokens)
        }
        let sweepSizes = TuneSweep.sizes(minimum: max(minimumExperts, workloads["none"]?.sequence.largestBatch ?? 1), total: totalExperts, maxPoints: options.maxSizes,
                                         extra: Array(budgetExperts.values))
        let clock = Date()
        let lastReport = Mutex(Date.distantPast)
        let points = TuneSweep.run(workloads: workloads, sizes: sweepSizes, policies: options.policies, layerCount: c.layerCount, cost: cost,
                                   maxExperts: budgetExperts) { done, total in
            let now = Date()
            guard lastReport.withLock({ last in
                guard now.timeIntervalSince(last) > 0.5 || done == total else { return false }
                last = now
                return true
            }) else { return }
            progress(String(format: "replaying: %d/%d configurations, %.1f s", done, total, now.timeIntervalSince(clock)))
        }
        let sweepSeconds = Date().timeIntervalSince(clock)
        guard var recommendation = Recommendation.choose(from: points, tolerance: options.tolerance) else {
            throw TuneError.nothingFits(budget: options.budget ?? 0, detail: "the smallest pool (\(sweepSizes.first ?? 0) experts) is over the budget")
        }
        recommendation.budgetExperts = budgetExperts["none"]

        var config = RunConfiguration()
        let p = recommendation.point
        if let budget = options.budget { config.memory = Units.exactBytes(budget) }
        config.expertCache = Units.exactBytes(p.experts * expertBytes)
        config.cachePolicy = CachePolicyKind(rawValue: p.policy)
        config.prefetch = PredictorKind(rawValue: p.prefetch)
        if p.prefetch != "none" {
            config.prefetchDepth = options.memory.prefetchDepth
            config.prefetchWidth = options.memory.prefetchWidth
            config.loaderThreads = options.memory.loaderThreads
            config.calibration = options.memory.calibration
        }
        config.threads = options.executor.threads
        config.note = String(format: "moe tune: %d of %d experts, %@%@, projected %.1f tokens/s, hit rate %.1f%% on %@", p.experts, totalExperts, p.policy,
                             p.prefetch == "none" ? "" : " + \(p.prefetch)", p.tokensPerSecond, 100 * p.hitRate, source)

        var result = TuneResult(model: path, tokens: base.tokenCount, requests: workloads["none"]?.sequence.count ?? 0, expertBytes: expertBytes,
                                totalExperts: totalExperts, minimumExperts: minimumExperts, budgetExperts: budgetExperts, memoryPlan: plan, cost: cost,
                                sweepSeconds: sweepSeconds, points: points, recommendation: recommendation, configuration: config, verification: nil)

        // Verify with a real run at the recommended point.
        if options.verifyTokens > 0 {
            var memory = options.memory
            memory.budget = nil  // the pool is set exactly; the plan above showed it fits the budget
            memory.expertCache = .bytes(p.experts * expertBytes)
            memory.cachePolicy = CachePolicyKind(rawValue: p.policy) ?? .lru
            memory.prefetch = PredictorKind(rawValue: p.prefetch) ?? .none
            let model = try Model(path: path, options: options.executor, memory: memory)
            let workload: TraceWorkload
            if let text, trace == nil {
                workload = .text(tokens: Array(text.prefix(min(options.verifyTokens, options.tokens))), mode: .decode, window: min(options.window, model.maxContext))
            } else {
                workload = .replaying(base, maxTokens: options.verifyTokens)
            }
            progress("verifying: \(workload.tokenCount) tokens at \(p.experts) experts, \(p.policy), prefetch \(p.prefetch)")
            let run = try model.recordTrace(workload, source: source)
            let w = TuningWorkload(trace: run)
            let replay = CacheSimulator.replay(w.sequence, capacity: p.experts, policy: memory.cachePolicy.make(layerCount: c.layerCount), prefetch: p.prefetch != "none")
            let measured = w.recorded.map { $0 ?? false }
            let wall = run.steps.reduce(0.0) { $0 + Double($1.duration) * 1e-9 }
            // The verification run evaluates the workload's first steps: project it with their measured compute.
            let sameSteps = zip(run.steps, base.steps).allSatisfy { $0.tokens == $1.tokens && $0.position == $1.position } && run.steps.count <= base.steps.count
            let projectedCompute = sameSteps ? CostModel.computeSeconds(base.steps.prefix(run.steps.count))
                : cost.computeSeconds / Double(max(cost.tokens, 1)) * Double(run.tokenCount)
            let projectedWait = Double(replay.result.misses) * cost.loadSeconds
                + Double(replay.prefetchIssued) * (cost.prefetchLoadSeconds[p.prefetch] ?? cost.loadSeconds)
            let measuredWait = run.steps.reduce(0.0) { $0 + Double(min($1.stall, $1.duration)) * 1e-9 }
            result.verification = TuneResult.Verification(
                tokens: run.tokenCount,
                projectedTokensPerSecond: cost.tokensPerSecond(tokens: run.tokenCount, computeSeconds: projectedCompute, misses: replay.result.misses,
                                                               prefetchLoads: replay.prefetchIssued, prefetch: p.prefetch),
                measuredTokensPerSecond: wall > 0 ? Double(run.tokenCount) / wall : 0,
                projectedHitRate: replay.result.hitRate,
                measuredHitRate: measured.isEmpty ? 1 : Double(measured.filter { $0 }.count) / Double(measured.count),
                disagreements: zip(replay.result.outcomes, measured).filter { $0 != $1 }.count + abs(replay.result.outcomes.count - measured.count),
                projectedComputeSeconds: projectedCompute, measuredComputeSeconds: wall - measuredWait,
                projectedWaitSeconds: projectedWait, measuredWaitSeconds: measuredWait)
        }
        return result
    }

    /// Median seconds to load one expert (read, verify, decode) on demand, measured by paging
    /// `samples` experts spread over the model through a minimal pool.
    static func measureLoadSeconds(catalog: ExpertCatalog, samples: Int) throws -> Double {
        let store = try PagedExpertStore(catalog: catalog, capacity: catalog.minimumPool(k: 1) + ExpertPool.alignment, policy: .lru)
        var times: [Double] = []
        let keys = (0..<catalog.layerCount).flatMap { l in (0..<catalog.expertCount).map { ExpertKey(layer: l, expert: $0) } }.filter { catalog.entry($0) != nil }
        guard !keys.isEmpty else { return 0 }
        for i in 0..<min(samples, keys.count) {
            let key = keys[(i * 7919) % keys.count]
            store.evictAll()
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try store.acquire(key)
            store.release(key)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return TraceAnalysis.median(times)
    }
}
