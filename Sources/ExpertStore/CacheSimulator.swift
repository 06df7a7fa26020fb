/// Replays an expert access sequence through a cache policy without touching any weights:
/// the same decisions ``PagedExpertStore`` makes for experts of equal size, in microseconds.
/// Used to check policies by hand and to sweep pool sizes (`moe tune`).
public struct CacheSimulator {
    public struct Result: Equatable, Sendable {
        public var hits = 0
        public var misses = 0
        /// Evicted experts, in order.
        public var evictions: [ExpertKey] = []
        /// Whether each access hit.
        public var outcomes: [Bool] = []
        public var hitRate: Double { hits + misses == 0 ? 1 : Double(hits) / Double(hits + misses) }
    }

    /// Runs `accesses` through a pool that holds `capacity` experts.
    public static func run(_ accesses: [ExpertKey], capacity: Int, policy: CachePolicy) -> Result {
        var result = Result()
        var resident = Set<ExpertKey>()
        for key in accesses {
            policy.recordAccess(key)
            if resident.contains(key) {
                result.hits += 1
                result.outcomes.append(true)
                continue
            }
            result.misses += 1
            result.outcomes.append(false)
            if resident.count >= capacity, capacity > 0 {
                let victim = policy.victim(among: Array(resident), currentLayer: key.layer)
                resident.remove(victim)
                policy.recordRemoval(victim)
                result.evictions.append(victim)
            }
            if capacity > 0 {
                resident.insert(key)
                policy.recordInsert(key)
            }
        }
        return result
    }

    /// Belady's MIN: on a miss with a full cache, evict the resident expert whose next use is
    /// farthest in the future (or never). The offline optimum for equal-size demand paging,
    /// the yardstick for every policy.
    public static func belady(_ accesses: [ExpertKey], capacity: Int) -> Result {
        var result = Result()
        // next[i]: index of the next access to accesses[i] after i (or Int.max).
        var next = [Int](repeating: Int.max, count: accesses.count)
        var seen: [ExpertKey: Int] = [:]
        for i in accesses.indices.reversed() {
            next[i] = seen[accesses[i]] ?? Int.max
            seen[accesses[i]] = i
        }
        var resident: [ExpertKey: Int] = [:]  // key → index of its next use
        for (i, key) in accesses.enumerated() {
            if resident[key] != nil {
                result.hits += 1
                result.outcomes.append(true)
                resident[key] = next[i]
                continue
            }
            result.misses += 1
            result.outcomes.append(false)
            guard capacity > 0 else { continue }
            if resident.count >= capacity {
                let victim = resident.max { ($0.value, $1.key.layer, $1.key.expert) < ($1.value, $0.key.layer, $0.key.expert) }!.key
                resident.removeValue(forKey: victim)
                result.evictions.append(victim)
            }
            resident[key] = next[i]
        }
        return result
    }
}

/// An expert access sequence as the executor issues it, with what a faithful replay needs
/// besides the keys: which requests are pinned together, and the predictor's prefetch requests.
///
/// A decode step acquires all of a layer's active experts before computing them
/// (`withExperts`), so while the second one loads the first is pinned and cannot be evicted;
/// consecutive requests with the same ``batches`` value model that. Prefill acquires one
/// expert at a time (each its own batch).
public struct AccessSequence: Sendable, Equatable {
    /// A prefetch request issued before request `before`, while layer `layer` ran.
    public struct PrefetchRequest: Sendable, Equatable {
        public var before: Int
        public var layer: Int
        public var keys: [ExpertKey]
        public init(before: Int, layer: Int, keys: [ExpertKey]) {
            self.before = before
            self.layer = layer
            self.keys = keys
        }
    }
    public var keys: [ExpertKey] = []
    public var batches: [Int] = []
    /// Sorted by `before`.
    public var prefetches: [PrefetchRequest] = []

    public init() {}

    /// Every request its own batch, no prefetches (what ``CacheSimulator/run(_:capacity:policy:)`` replays).
    public init(keys: [ExpertKey]) {
        self.keys = keys
        batches = Array(keys.indices)
    }

    public var count: Int { keys.count }

    /// The most requests pinned together at once: the smallest pool (in experts) that works.
    public var largestBatch: Int {
        var best = 0, run = 0
        for i in batches.indices {
            run = i > 0 && batches[i] == batches[i - 1] ? run + 1 : 1
            best = max(best, run)
        }
        return best
    }

    /// The first `n` requests and the prefetches issued before them.
    public func prefix(_ n: Int) -> AccessSequence {
        var s = AccessSequence()
        s.keys = Array(keys.prefix(n))
        s.batches = Array(batches.prefix(n))
        s.prefetches = prefetches.filter { $0.before < n }
        return s
    }
}

extension CacheSimulator {
    /// What a replay with prefetching adds to ``Result``.
    public struct ReplayResult: Equatable, Sendable {
        public var result = Result()
        /// Prefetch loads started, used before eviction, and evicted unused.
        public var prefetchIssued = 0
        public var prefetchUseful = 0
        public var prefetchWasted = 0
    }

    /// Replays `sequence` through a pool of `capacity` equal-size experts the way
    /// ``PagedExpertStore`` serves it:
    ///
    /// - the policy sees every request (`recordAccess`) before the pool is looked at, and an
    ///   insertion after a load, evictions as removals;
    /// - experts requested earlier in the same batch are pinned and never chosen as victims;
    /// - with `prefetch`, each request of ``AccessSequence/prefetches`` is served as the store
    ///   does: keys already resident are skipped, the rest are loaded until the unused-prefetch
    ///   cap (`prefetchCap` experts) is reached or no victim is allowed (experts of the running
    ///   layer, unused prefetches and keys queued by the same request are off limits).
    ///
    /// Without prefetching this is exact for equal-size experts (tested against the store).
    /// With prefetching it assumes every prefetch has landed before the next request (a late
    /// prefetch still counts as a hit in the store, but while loading it cannot be evicted and
    /// its policy insertion comes later), so it approximates the store's eviction order.
    ///
    /// A `capacity` below ``AccessSequence/largestBatch`` cannot hold a batch; the store throws
    /// there, the replay lets the batch overflow the pool for that moment.
    public static func replay(_ sequence: AccessSequence, capacity: Int, policy: CachePolicy, prefetch: Bool = false,
                              prefetchCap: Int? = nil) -> ReplayResult {
        var out = ReplayResult()
        var resident = Set<ExpertKey>()
        var unusedPrefetched = Set<ExpertKey>()
        var pinned: [ExpertKey] = []
        let cap = prefetchCap ?? capacity / 2
        var nextPrefetch = 0
        out.result.outcomes.reserveCapacity(sequence.count)

        func evict(_ victim: ExpertKey) {
            resident.remove(victim)
            policy.recordRemoval(victim)
            out.result.evictions.append(victim)
            if unusedPrefetched.remove(victim) != nil { out.prefetchWasted += 1 }
        }

        for (i, key) in sequence.keys.enumerated() {
            if i == 0 || sequence.batches[i] != sequence.batches[i - 1] { pinned.removeAll(keepingCapacity: true) }
            while prefetch, nextPrefetch < sequence.prefetches.count, sequence.prefetches[nextPrefetch].before <= i {
                let request = sequence.prefetches[nextPrefetch]
                nextPrefetch += 1
                var queued: [ExpertKey] = []
                for k in request.keys where !resident.contains(k) {
                    guard unusedPrefetched.count + 1 <= cap else { break }
                    if resident.count >= capacity {
                        let candidates = resident.filter { $0.layer != request.layer && !unusedPrefetched.contains($0) && !queued.contains($0) && !pinned.contains($0) }
                        guard !candidates.isEmpty else { break }
                        evict(policy.victim(among: Array(candidates), currentLayer: request.layer))
                    }
                    resident.insert(k)
                    unusedPrefetched.insert(k)
                    policy.recordInsert(k)
                    queued.append(k)
                    out.prefetchIssued += 1
                }
            }
            policy.recordAccess(key)
            if resident.contains(key) {
                out.result.hits += 1
                out.result.outcomes.append(true)
                if unusedPrefetched.remove(key) != nil { out.prefetchUseful += 1 }
                pinned.append(key)
                continue
            }
            out.result.misses += 1
            out.result.outcomes.append(false)
            if resident.count >= capacity {
                let candidates = resident.filter { !pinned.contains($0) }
                if !candidates.isEmpty { evict(policy.victim(among: Array(candidates), currentLayer: key.layer)) }
            }
            resident.insert(key)
            policy.recordInsert(key)
            pinned.append(key)
        }
        return out
    }
}
