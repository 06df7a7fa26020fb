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
