import ExpertStore
import Foundation

/// The statistics the report draws, computed from a trace alone.
public struct TraceAnalysis {
    public let trace: Trace
    /// Per token, the experts each MoE layer chose (`routes[token][moeLayerIndex]`).
    public let routes: [[[Int]]]

    public init(_ trace: Trace) {
        self.trace = trace
        let moe = trace.header.moeLayers
        let index = Dictionary(uniqueKeysWithValues: moe.enumerated().map { ($1, $0) })
        var routes: [[[Int]]] = []
        for step in trace.steps {
            var tokens = [[[Int]]](repeating: Array(repeating: [], count: moe.count), count: step.tokens.count)
            for layer in step.layers {
                guard let i = index[layer.layer] else { continue }
                for (t, r) in layer.routes.enumerated() where t < tokens.count { tokens[t][i] = r.experts }
            }
            routes += tokens
        }
        self.routes = routes
    }

    /// `frequency[i][e]`: tokens whose route at MoE layer `moeLayers[i]` includes expert e.
    public var frequency: [[Int]] {
        let h = trace.header
        var f = [[Int]](repeating: Array(repeating: 0, count: h.expertCount), count: h.moeLayers.count)
        for token in routes {
            for (i, experts) in token.enumerated() { for e in experts where e < h.expertCount { f[i][e] += 1 } }
        }
        return f
    }

    /// `counts[e][f]`: tokens that chose e at model layer `from` and f at model layer `to`.
    public func transitions(from: Int, to: Int) -> [[Int]] {
        let n = trace.header.expertCount
        var m = [[Int]](repeating: Array(repeating: 0, count: n), count: n)
        guard let a = trace.header.moeLayers.firstIndex(of: from), let b = trace.header.moeLayers.firstIndex(of: to) else { return m }
        for token in routes {
            for e in token[a] where e < n { for f in token[b] where f < n { m[e][f] += 1 } }
        }
        return m
    }

    /// `counts[e][f]` (e ≠ f): tokens that chose both e and f at model layer `layer`.
    public func coactivation(layer: Int) -> [[Int]] {
        let n = trace.header.expertCount
        var m = [[Int]](repeating: Array(repeating: 0, count: n), count: n)
        guard let a = trace.header.moeLayers.firstIndex(of: layer) else { return m }
        for token in routes {
            let set = token[a].filter { $0 < n }
            for e in set { for f in set where f != e { m[e][f] += 1 } }
        }
        return m
    }

    /// Reuse (LRU stack) distance of every request to the store: how many *other* experts were
    /// requested since the same expert was last requested; nil for a first request. A pool of C
    /// experts under LRU hits exactly the requests with distance < C (with nothing pinned).
    public var reuseDistances: [Int?] {
        let keys = trace.requests.map(\.key)
        var last: [ExpertKey: Int] = [:]
        var tree = [Int](repeating: 0, count: keys.count + 1)  // Fenwick tree over request indices
        func add(_ i: Int, _ v: Int) {
            var i = i + 1
            while i < tree.count { tree[i] += v; i += i & -i }
        }
        func sum(_ i: Int) -> Int {  // marks at indices < i
            var i = i, s = 0
            while i > 0 { s += tree[i]; i -= i & -i }
            return s
        }
        var out: [Int?] = []
        out.reserveCapacity(keys.count)
        for (i, k) in keys.enumerated() {
            if let p = last[k] {
                out.append(sum(i) - sum(p + 1))
                add(p, -1)
            } else {
                out.append(nil)
            }
            add(i, 1)
            last[k] = i
        }
        return out
    }

    /// Reuse distances in power-of-two buckets: `first` (cold), `0`, `1`, `2–3`, `4–7`, ….
    public var reuseHistogram: [(label: String, count: Int)] {
        let d = reuseDistances
        let maxD = d.compactMap { $0 }.max() ?? 0
        var buckets: [(String, Int)] = [("first", d.filter { $0 == nil }.count), ("0", 0)]
        var lo = 1
        while lo <= max(maxD, 1) {
            let hi = lo * 2 - 1
            buckets.append((lo == hi ? "\(lo)" : "\(lo)–\(hi)", 0))
            lo *= 2
        }
        for case let x? in d {
            let b = x == 0 ? 1 : 2 + (Int.bitWidth - 1 - x.leadingZeroBitCount)
            if b < buckets.count { buckets[b].1 += 1 }
        }
        return buckets.map { (label: $0.0, count: $0.1) }
    }

    public struct HitRatePoint {
        /// Tokens evaluated up to the end of the step.
        public var tokens: Int
        /// Hit rate over the last `window` steps, and since the start.
        public var window: Double
        public var cumulative: Double
    }

    /// Hit rate of recorded accesses after each step (empty when the run was not paged).
    public func hitRateOverTokens(window: Int = 32) -> [HitRatePoint] {
        var out: [HitRatePoint] = []
        var tokens = 0, hits = 0, total = 0
        var recent: [(Int, Int)] = []
        var recentHits = 0, recentTotal = 0
        for step in trace.steps {
            tokens += step.tokens.count
            let a = step.layers.flatMap(\.accesses)
            guard !a.isEmpty else { continue }
            let h = a.filter(\.isHit).count
            hits += h
            total += a.count
            recent.append((h, a.count))
            recentHits += h
            recentTotal += a.count
            if recent.count > window {
                let old = recent.removeFirst()
                recentHits -= old.0
                recentTotal -= old.1
            }
            out.append(HitRatePoint(tokens: tokens, window: Double(recentHits) / Double(max(recentTotal, 1)), cumulative: Double(hits) / Double(max(total, 1))))
        }
        return out
    }

    /// Totals of the run.
    public struct Summary: Codable, Sendable {
        public var steps = 0, prefillSteps = 0, decodeSteps = 0, tokens = 0
        public var accesses = 0, hits = 0, misses = 0, late = 0, prefetchedHits = 0
        public var loads = 0, prefetchLoads = 0, bytesRead = 0
        public var evictions = 0, wastedPrefetches = 0
        public var stallSeconds = 0.0
        public var wallSeconds = 0.0
        /// Decode steps: median seconds per token, median compute (wall − stall) per token.
        public var decodeSecondsPerToken: Double?
        public var decodeComputeSecondsPerToken: Double?
        /// Median seconds of one demand load.
        public var demandLoadSeconds: Double?
        public var hitRate: Double { accesses == 0 ? 0 : Double(hits + late) / Double(accesses) }
    }

    public var summary: Summary {
        var s = Summary()
        s.steps = trace.steps.count
        s.prefillSteps = trace.steps.filter { $0.kind == .prefill }.count
        s.decodeSteps = s.steps - s.prefillSteps
        s.tokens = trace.tokenCount
        for a in trace.steps.flatMap({ $0.layers.flatMap(\.accesses) }) {
            s.accesses += 1
            switch a.outcome {
            case .hit: s.hits += 1
            case .miss: s.misses += 1
            case .late: s.late += 1
            }
            if a.prefetched { s.prefetchedHits += 1 }
            s.stallSeconds += Double(a.stall) * 1e-9
        }
        s.loads = trace.loads.count
        s.prefetchLoads = trace.loads.filter(\.prefetch).count
        s.bytesRead = trace.loads.reduce(0) { $0 + $1.bytes }
        s.evictions = trace.evictions.count
        s.wastedPrefetches = trace.evictions.filter(\.unusedPrefetch).count
        if let first = trace.steps.first, let last = trace.steps.last { s.wallSeconds = Double(last.end &- first.start) * 1e-9 }
        let decode = trace.steps.filter { $0.kind == .decode && $0.tokens.count == 1 }
        if !decode.isEmpty {
            s.decodeSecondsPerToken = TraceAnalysis.median(decode.map { Double($0.duration) * 1e-9 })
            s.decodeComputeSecondsPerToken = TraceAnalysis.median(decode.map { Double($0.duration &- min($0.stall, $0.duration)) * 1e-9 })
        }
        let demand = trace.loads.filter { !$0.prefetch && !$0.failed }
        if !demand.isEmpty { s.demandLoadSeconds = TraceAnalysis.median(demand.map { Double($0.duration) * 1e-9 }) }
        return s
    }

    public static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
