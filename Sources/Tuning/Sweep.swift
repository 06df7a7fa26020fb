import Dispatch
import ExpertStore
import Foundation
import Synchronization
import Tracing

/// A trace's requests to the expert store as a replayable ``AccessSequence``: keys in request
/// order, a decode step's requests of one layer pinned together, and the predictor's prefetch
/// requests placed before the requests of the layer that issued them (as the executor does:
/// route, predict, prefetch, then acquire).
public struct TuningWorkload: Sendable {
    public let sequence: AccessSequence
    /// The predictor whose requests the sequence holds (`none` if it holds none).
    public let prefetch: String
    /// Tokens the trace evaluated.
    public let tokens: Int
    /// The outcomes the run recorded (nil where the run was not paged).
    public let recorded: [Bool?]

    public init(trace: Trace) {
        var s = AccessSequence()
        var recorded: [Bool?] = []
        let requests = trace.requests
        var r = 0
        for (i, step) in trace.steps.enumerated() {
            for layer in step.layers {
                for p in layer.prefetches where !p.requested.isEmpty {
                    s.prefetches.append(.init(before: s.keys.count, layer: layer.layer, keys: p.requested))
                }
                while r < requests.count, requests[r].step == i, requests[r].key.layer == layer.layer {
                    s.keys.append(requests[r].key)
                    s.batches.append(requests[r].batch)
                    recorded.append(requests[r].outcome.map { $0 != .miss })
                    r += 1
                }
            }
        }
        sequence = s
        self.recorded = recorded
        prefetch = s.prefetches.isEmpty ? "none" : trace.header.prefetch
        tokens = trace.tokenCount
    }

    /// A workload from a sequence directly (no recorded outcomes).
    public init(sequence: AccessSequence, tokens: Int, prefetch: String? = nil) {
        self.sequence = sequence
        self.tokens = tokens
        self.prefetch = prefetch ?? (sequence.prefetches.isEmpty ? "none" : "unknown")
        recorded = Array(repeating: nil, count: sequence.count)
    }

}

/// What the time of a run is made of, measured on the machine (docs/tuning.md).
///
/// seconds = compute + misses × load + prefetch loads × prefetch cost(kind)
///
/// - `computeSeconds`: the workload's wall time minus the time the executor waited for experts.
/// - `loadSeconds`: the median demand load (read, checksum, decode) of one expert.
/// - `prefetchLoadSeconds[kind]`: what one prefetch load added to the wall time in a measured
///   run with that predictor — (wall − compute − misses × load) / prefetch loads. Near 0 when
///   loads hide behind compute; near `loadSeconds` (or above, on a machine where loader threads
///   compete with compute for the cores) when they do not.
public struct CostModel: Codable, Sendable {
    public var tokens: Int
    public var computeSeconds: Double
    public var loadSeconds: Double
    public var prefetchLoadSeconds: [String: Double]
    public var expertBytes: Int

    public init(tokens: Int, computeSeconds: Double, loadSeconds: Double, prefetchLoadSeconds: [String: Double] = [:], expertBytes: Int) {
        self.tokens = tokens
        self.computeSeconds = computeSeconds
        self.loadSeconds = loadSeconds
        self.prefetchLoadSeconds = prefetchLoadSeconds
        self.expertBytes = expertBytes
    }

    /// Projected seconds for `tokens` tokens (of a workload with the same compute per token).
    public func seconds(tokens n: Int, misses: Int, prefetchLoads: Int, prefetch: String) -> Double {
        let compute = computeSeconds / Double(max(tokens, 1)) * Double(n)
        return compute + Double(misses) * loadSeconds + Double(prefetchLoads) * (prefetchLoadSeconds[prefetch] ?? loadSeconds)
    }

    public func tokensPerSecond(tokens n: Int, misses: Int, prefetchLoads: Int, prefetch: String) -> Double {
        let s = seconds(tokens: n, misses: misses, prefetchLoads: prefetchLoads, prefetch: prefetch)
        return s > 0 ? Double(n) / s : 0
    }

    /// The same for a part of the workload whose compute time is known (e.g. its first steps:
    /// attention grows with the position, so a prefix computes faster per token than the whole).
    public func tokensPerSecond(tokens n: Int, computeSeconds compute: Double, misses: Int, prefetchLoads: Int, prefetch: String) -> Double {
        let s = compute + Double(misses) * loadSeconds + Double(prefetchLoads) * (prefetchLoadSeconds[prefetch] ?? loadSeconds)
        return s > 0 ? Double(n) / s : 0
    }

    /// Compute seconds (wall − stall) of a trace's steps.
    public static func computeSeconds(_ steps: ArraySlice<TraceStep>) -> Double {
        steps.reduce(0.0) { $0 + Double($1.duration &- min($1.stall, $1.duration)) * 1e-9 }
    }

    /// Measures the cost model from a trace: compute = Σ (step wall − stall); load = median
    /// demand load (or `fallbackLoadSeconds` when the trace has none); for a trace recorded with
    /// a predictor, its prefetch cost from its own wall time.
    public static func measure(_ trace: Trace, fallbackLoadSeconds: Double? = nil) -> CostModel {
        let summary = TraceAnalysis(trace).summary
        let compute = computeSeconds(trace.steps[...])
        var model = CostModel(tokens: trace.tokenCount, computeSeconds: compute, loadSeconds: summary.demandLoadSeconds ?? fallbackLoadSeconds ?? 0,
                              expertBytes: trace.header.expertBytes)
        model.addPrefetchCost(from: trace)
        return model
    }

    /// Adds the prefetch cost of the predictor `trace` was recorded with, measured against this
    /// model's compute time for the same tokens.
    public mutating func addPrefetchCost(from trace: Trace) {
        guard trace.header.prefetch != "none" else { return }
        let s = TraceAnalysis(trace).summary
        guard s.prefetchLoads > 0 else { return }
        let wall = trace.steps.reduce(0.0) { $0 + Double($1.duration) * 1e-9 }
        let compute = computeSeconds / Double(max(tokens, 1)) * Double(trace.tokenCount)
        prefetchLoadSeconds[trace.header.prefetch] = max(0, (wall - compute - Double(s.misses) * loadSeconds) / Double(s.prefetchLoads))
    }
}

/// One replayed configuration.
public struct SweepPoint: Codable, Sendable, Equatable {
    /// Pool size in experts, and in bytes (experts × expert bytes).
    public var experts: Int
    public var poolBytes: Int
    /// `lru`, `lfu`, `fifo`, `edgemoe`, or `belady` (the offline optimum, no prefetch: a bound).
    public var policy: String
    public var prefetch: String
    public var hits: Int
    public var misses: Int
    public var prefetchLoads: Int
    public var prefetchWasted: Int
    public var hitRate: Double
    public var tokensPerSecond: Double
    /// Whether the pool fits the budget.
    public var withinBudget: Bool
}

public enum TuneSweep {
    /// Pool sizes (experts) from `minimum` to `total`: every size if there are at most
    /// `maxPoints`, else evenly spaced, always with both ends and `extra` sizes.
    public static func sizes(minimum: Int, total: Int, maxPoints: Int = 64, extra: [Int] = []) -> [Int] {
        let lo = max(1, minimum), hi = max(lo, total)
        var set = Set<Int>()
        if hi - lo + 1 <= maxPoints {
            set.formUnion(lo...hi)
        } else {
            for i in 0..<maxPoints { set.insert(lo + Int((Double(hi - lo) * Double(i) / Double(maxPoints - 1)).rounded())) }
        }
        set.formUnion(extra.filter { $0 >= lo && $0 <= hi })
        return set.sorted()
    }

    /// Replays every policy × prefetch workload × size (and Belady's MIN per size), in parallel
    /// over the cores. `workloads["none"]` must be present; others carry a predictor's
    /// prefetch requests. `maxExperts[kind]`: the largest pool the budget allows with that
    /// predictor (loader threads take budget too). `progress` is called from the worker threads,
    /// one call at a time, with the number of replays finished and the total.
    public static func run(workloads: [String: TuningWorkload], sizes: [Int], policies: [CachePolicyKind], layerCount: Int, cost: CostModel,
                           maxExperts: [String: Int], progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil) -> [SweepPoint] {
        struct Job { var size: Int; var policy: CachePolicyKind?; var kind: String }
        let kinds = workloads.keys.sorted { $0 == "none" ? true : ($1 == "none" ? false : $0 < $1) }
        let jobs = sizes.flatMap { size in
            [Job(size: size, policy: nil, kind: "none")] + kinds.flatMap { kind in policies.map { Job(size: size, policy: $0, kind: kind) } }
        }
        // Each job's point and the count of finished jobs, written by the worker that ran it.
        let state = Mutex((points: [SweepPoint?](repeating: nil, count: jobs.count), done: 0))
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            guard let w = workloads[job.kind] else { return }
            var hits = 0, misses = 0, loads = 0, wasted = 0
            if let policy = job.policy {
                let r = CacheSimulator.replay(w.sequence, capacity: job.size, policy: policy.make(layerCount: layerCount), prefetch: job.kind != "none")
                (hits, misses, loads, wasted) = (r.result.hits, r.result.misses, r.prefetchIssued, r.prefetchWasted)
            } else {
                let r = CacheSimulator.belady(w.sequence.keys, capacity: job.size)
                (hits, misses) = (r.hits, r.misses)
            }
            let point = SweepPoint(
                experts: job.size, poolBytes: job.size * cost.expertBytes, policy: job.policy?.rawValue ?? "belady", prefetch: job.kind,
                hits: hits, misses: misses, prefetchLoads: loads, prefetchWasted: wasted,
                hitRate: hits + misses == 0 ? 1 : Double(hits) / Double(hits + misses),
                tokensPerSecond: cost.tokensPerSecond(tokens: w.tokens, misses: misses, prefetchLoads: loads, prefetch: job.kind),
                withinBudget: job.size <= (maxExperts[job.kind] ?? Int.max))
            state.withLock { s in
                s.points[i] = point
                s.done += 1
                progress?(s.done, jobs.count)
            }
        }
        return state.withLock { $0.points.compactMap { $0 } }
    }
}

/// The configuration `moe tune` recommends.
public struct Recommendation: Codable, Sendable {
    /// The chosen point: the smallest pool within `tolerance` of the fastest point the budget allows.
    public var point: SweepPoint
    /// The fastest point within the budget.
    public var fastest: SweepPoint
    public var tolerance: Double
    /// The largest pool (experts) the budget allows without prefetching (nil: no budget).
    public var budgetExperts: Int?

    /// Picks among `points` (Belady's MIN excluded: it is a bound, not a policy).
    public static func choose(from points: [SweepPoint], tolerance: Double) -> Recommendation? {
        let feasible = points.filter { $0.withinBudget && $0.policy != "belady" }
        guard let fastest = feasible.max(by: { $0.tokensPerSecond < $1.tokensPerSecond }) else { return nil }
        let goal = fastest.tokensPerSecond * (1 - tolerance)
        let good = feasible.filter { $0.tokensPerSecond >= goal }
        let size = good.map(\.experts).min() ?? fastest.experts
        // At that size the fastest configuration; on a tie, the one without prefetching (fewer reads).
        let point = good.filter { $0.experts == size }.max { a, b in
            a.tokensPerSecond != b.tokensPerSecond ? a.tokensPerSecond < b.tokensPerSecond : (a.prefetch != "none" && b.prefetch == "none")
        } ?? fastest
        return Recommendation(point: point, fastest: fastest, tolerance: tolerance, budgetExperts: nil)
    }
}

/// The tuning figure: hit rate (top) and projected tokens/s (bottom) against pool size, one
/// line per policy and predictor, Belady's MIN dashed, the budget's limit and the
/// recommendation marked.
public enum TuneChart {
    public static func svg(points: [SweepPoint], recommendation: Recommendation?, expertBytes: Int, title: String) -> String {
        var keys: [String] = []
        for p in points where !keys.contains("\(p.policy)|\(p.prefetch)") { keys.append("\(p.policy)|\(p.prefetch)") }
        keys.sort { a, b in a.hasPrefix("belady") ? false : (b.hasPrefix("belady") ? true : (a.hasSuffix("|none") != b.hasSuffix("|none") ? a.hasSuffix("|none") : a < b)) }
        // One colour per policy, dashed with a predictor, Belady's MIN in black.
        let policyOrder = CachePolicyKind.allCases.map(\.rawValue)
        func series(_ value: (SweepPoint) -> Double) -> [Charts.Series] {
            keys.map { key in
                let parts = key.split(separator: "|").map(String.init)
                let name = parts[0] == "belady" ? "Belady MIN (bound)" : (parts[1] == "none" ? parts[0] : "\(parts[0]) + \(parts[1])")
                let pts = points.filter { "\($0.policy)|\($0.prefetch)" == key }.sorted { $0.experts < $1.experts }
                let color = parts[0] == "belady" ? "#000000" : Charts.palette[(policyOrder.firstIndex(of: parts[0]) ?? 0) % Charts.palette.count]
                return Charts.Series(name: name, points: pts.map { (x: Double($0.poolBytes) / 1_048_576, y: value($0)) },
                                     color: color, dashed: parts[0] == "belady" || parts[1] != "none")
            }
        }
        var markers: [(x: Double, label: String)] = []
        if let r = recommendation {
            markers.append((Double(r.point.poolBytes) / 1_048_576, "recommended"))
            if let b = r.budgetExperts { markers.append((Double(b * expertBytes) / 1_048_576, "budget")) }
        }
        let top = Charts.lines(title: "\(title): hit rate", series: series(\.hitRate), xLabel: "expert cache (MiB)", yLabel: "hit rate",
                               yRange: 0...1, markers: markers, width: 720, height: 300, xFormat: { String(format: "%.1f", $0) },
                               yFormat: { String(format: "%.0f%%", 100 * $0) })
        let bottom = Charts.lines(title: "\(title): projected tokens/s", series: series(\.tokensPerSecond),
                                  xLabel: "expert cache (MiB)", yLabel: "tokens/s", markers: markers, width: 720, height: 300,
                                  xFormat: { String(format: "%.1f", $0) }, yFormat: { String(format: "%.0f", $0) })
        // Stack the two charts in one SVG.
        func inner(_ svg: String) -> String {
            guard let start = svg.range(of: ">\n")?.upperBound, let end = svg.range(of: "</svg>", options: .backwards)?.lowerBound else { return "" }
            return String(svg[start..<end])
        }
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"600\" viewBox=\"0 0 720 600\" font-family=\"Helvetica, Arial, sans-serif\">\n"
            + "<g>\(inner(top))</g>\n<g transform=\"translate(0 300)\">\(inner(bottom))</g>\n</svg>\n"
    }
}
