/// Evicts the expert whose next use is expected farthest away, estimated online from the
/// routing seen so far — an online stand-in for Belady's MIN, which evicts the expert whose
/// next use *is* farthest away.
///
/// Layers run in a cycle, so an expert of layer `l` can next be used when the executor next
/// reaches `l`: `d = (l − current) mod L` layers from now. Whether it is used then is a coin
/// with probability `p`: its share of its layer's turns so far, or, for the layer right after
/// the running one, the share of times it followed the experts the running layer chose for
/// this token (transition counts learned online). If the coin fails, it comes back on average
/// after `1/p` further cycles. Evict the largest `d + L·(1 − p)/p`; the running layer's experts
/// are kept; ties go to the least recently used.
public final class NextUsePolicy: CachePolicy {
    public let name = "nextuse"
    public let layerCount: Int
    private var counts: [ExpertKey: Double] = [:]
    /// Turns of each layer so far (a turn: consecutive requests of one layer).
    private var turns: [Int: Double] = [:]
    /// `[from layer l, expert a]` → times a layer-(l+1) turn directly followed a turn of l that chose a.
    private var follows: [ExpertKey: Double] = [:]
    /// `transitions[(l, a)][b]` → times expert b of layer l+1 was chosen in a turn that followed
    /// a turn of l that chose a. One row of counts per `(l, a)` seen, as long as the largest b
    /// seen (its capacity the next power of two): at most layers × experts × 4 × (experts
    /// rounded up to a power of two) bytes (3 MB for 48 layers of 128 experts), where a
    /// dictionary keyed by the pair took about 11 times that once every pair had been seen (a
    /// pass that requests every expert in order, as `moe calibrate`'s proxy step does, sees them all).
    private var transitions: [ExpertKey: [UInt32]] = [:]
    private var currentLayer: Int?
    private var currentChoices: [Int] = []
    private var previousChoices: (layer: Int, experts: [Int])?
    private let recency = LRUPolicy()

    public init(layerCount: Int) { self.layerCount = max(layerCount, 1) }

    public func recordAccess(_ key: ExpertKey) {
        recency.recordAccess(key)
        counts[key, default: 0] += 1
        if key.layer != currentLayer {
            if let layer = currentLayer { previousChoices = (layer, currentChoices) }
            currentLayer = key.layer
            currentChoices = []
            turns[key.layer, default: 0] += 1
            if let prev = previousChoices, prev.layer + 1 == key.layer {
                for a in prev.experts { follows[ExpertKey(layer: prev.layer, expert: a), default: 0] += 1 }
            } else {
                previousChoices = nil
            }
        }
        guard !currentChoices.contains(key.expert) else { return }
        currentChoices.append(key.expert)
        if let prev = previousChoices {
            for a in prev.experts { countTransition(from: ExpertKey(layer: prev.layer, expert: a), to: key.expert) }
        }
    }

    private func countTransition(from: ExpertKey, to b: Int) {
        guard b >= 0 else { return }
        func count(_ row: inout [UInt32]) {
            if row.count <= b {
                // Rows grow to the next power of two of the largest expert seen, not beyond.
                row.reserveCapacity(1 << (Int.bitWidth - b.leadingZeroBitCount))
                row.append(contentsOf: repeatElement(0, count: b + 1 - row.count))
            }
            if row[b] < .max { row[b] += 1 }
        }
        count(&transitions[from, default: []])
    }

    private func transitionCount(from: ExpertKey, to b: Int) -> Double {
        guard b >= 0, let row = transitions[from], b < row.count else { return 0 }
        return Double(row[b])
    }

    public func recordInsert(_ key: ExpertKey) { recency.recordInsert(key) }
    public func recordRemoval(_ key: ExpertKey) {}

    /// Expected layer steps until `key` is next requested, seen from `currentLayer`.
    public func expectedDistance(_ key: ExpertKey, currentLayer: Int) -> Double {
        let d = ((key.layer - currentLayer) % layerCount + layerCount) % layerCount
        if d == 0 { return 0 }
        // The 1/8 prior keeps never-seen experts finite and below every seen one.
        var p = ((counts[key] ?? 0) + 0.125) / ((turns[key.layer] ?? 0) + 1)
        if d == 1, self.currentLayer == currentLayer, !currentChoices.isEmpty {
            var hits = 0.0, total = 0.0
            for a in currentChoices {
                let from = ExpertKey(layer: currentLayer, expert: a)
                hits += transitionCount(from: from, to: key.expert)
                total += follows[from] ?? 0
            }
            p = (hits + p) / (total + 1)
        }
        p = min(max(p, 1e-6), 0.999)
        return Double(d) + Double(layerCount) * (1 - p) / p
    }

    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        var best = candidates[0], bestDistance = -Double.infinity, bestUse = Int.max
        for key in candidates {
            let distance = key.layer == currentLayer ? -Double.infinity : expectedDistance(key, currentLayer: currentLayer)
            let use = recency.lastUse(of: key)
            if distance > bestDistance || (distance == bestDistance && use < bestUse) {
                (best, bestDistance, bestUse) = (key, distance, use)
            }
        }
        return best
    }
}

/// `--cache-policy auto`: follows whichever of several policies would have hit most on the
/// recent requests. Every candidate also runs in a shadow cache of the real one's size (the
/// number of experts resident when the real cache last had to evict) that sees every request;
/// shadow hits are counted with exponential decay (a window of about ``window`` requests), and
/// the real cache evicts what the leader would. So on a workload where frequency pays it acts
/// as LFU, where recency pays as LRU, and it follows a change of workload within a window.
///
/// Deterministic: the same requests give the same victims (ties go to the earlier candidate).
public final class AutoPolicy: CachePolicy {
    public let name = "auto"
    /// Requests over which shadow hits are weighed (decay `1 − 1/window` per request).
    public let window: Double
    private let decay: Double
    private var shadows: [Shadow]
    private var residentCount = 0
    /// Experts the real cache holds when full (nil until its first eviction).
    private var capacity: Int?

    /// One candidate: the instance that decides for the real cache, and its shadow.
    private final class Shadow {
        let live: CachePolicy
        let policy: CachePolicy
        var resident = Set<ExpertKey>()
        var score = 0.0
        var hits = 0
        init(live: CachePolicy, policy: CachePolicy) {
            self.live = live
            self.policy = policy
        }
    }

    /// The candidates, in order of preference on ties.
    public static func candidates(layerCount: Int) -> [CachePolicy] {
        [NextUsePolicy(layerCount: layerCount), LFUPolicy(), EdgeMoEPolicy(layerCount: layerCount), LRUPolicy(), DecayedLFUPolicy()]
    }

    public init(layerCount: Int, window: Int = 2048) {
        self.window = Double(max(window, 1))
        decay = 1 - 1 / self.window
        shadows = zip(AutoPolicy.candidates(layerCount: layerCount), AutoPolicy.candidates(layerCount: layerCount)).map { Shadow(live: $0, policy: $1) }
    }

    /// The candidate the real cache follows now.
    public var leader: String { shadows[leaderIndex].live.name }
    /// Each candidate's shadow hits since the start (for reports and tests).
    public var shadowHits: [String: Int] { Dictionary(uniqueKeysWithValues: shadows.map { ($0.live.name, $0.hits) }) }

    private var leaderIndex: Int {
        var best = 0
        for i in shadows.indices where shadows[i].score > shadows[best].score { best = i }
        return best
    }

    public func recordAccess(_ key: ExpertKey) {
        for s in shadows {
            s.live.recordAccess(key)
            s.policy.recordAccess(key)
            s.score *= decay
            if s.resident.contains(key) {
                s.score += 1
                s.hits += 1
                continue
            }
            if let capacity {
                while s.resident.count >= capacity, !s.resident.isEmpty {
                    let victim = s.policy.victim(among: Array(s.resident), currentLayer: key.layer)
                    s.resident.remove(victim)
                    s.policy.recordRemoval(victim)
                }
            }
            s.resident.insert(key)
            s.policy.recordInsert(key)
        }
    }

    public func recordInsert(_ key: ExpertKey) {
        residentCount += 1
        for s in shadows { s.live.recordInsert(key) }
    }

    public func recordRemoval(_ key: ExpertKey) {
        residentCount -= 1
        for s in shadows { s.live.recordRemoval(key) }
    }

    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        capacity = max(1, residentCount)
        return shadows[leaderIndex].live.victim(among: candidates, currentLayer: currentLayer)
    }
}
