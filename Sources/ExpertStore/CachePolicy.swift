import Foundation

/// Identifies one expert of one layer.
public struct ExpertKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public var layer: Int
    public var expert: Int
    public init(layer: Int, expert: Int) {
        self.layer = layer
        self.expert = expert
    }
    public var description: String { "L\(layer)E\(expert)" }
}

/// Chooses which resident expert to evict. Policies see every access and insertion; the
/// store asks for a victim among the experts that are resident and not pinned.
public protocol CachePolicy: AnyObject {
    var name: String { get }
    /// An expert was requested (hit or miss), while the executor is at `layer`.
    func recordAccess(_ key: ExpertKey)
    /// An expert became resident.
    func recordInsert(_ key: ExpertKey)
    /// An expert left the pool.
    func recordRemoval(_ key: ExpertKey)
    /// The expert to evict among `candidates` (never empty) when the executor is at `currentLayer`.
    func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey
}

/// The policies users pick with `--cache-policy`.
public enum CachePolicyKind: String, CaseIterable, Sendable, Codable {
    /// The default: follows whichever policy would have hit most lately (``AutoPolicy``).
    case auto
    case lru, lfu, fifo, edgemoe

    public func make(layerCount: Int) -> CachePolicy {
        switch self {
        case .auto: return AutoPolicy(layerCount: layerCount)
        case .lru: return LRUPolicy()
        case .lfu: return LFUPolicy()
        case .fifo: return FIFOPolicy()
        case .edgemoe: return EdgeMoEPolicy(layerCount: layerCount)
        }
    }
}

/// Least recently used: evict the expert whose last access is oldest.
public final class LRUPolicy: CachePolicy {
    public let name = "lru"
    private var clock = 0
    private var lastUse: [ExpertKey: Int] = [:]
    public init() {}
    public func recordAccess(_ key: ExpertKey) {
        clock += 1
        lastUse[key] = clock
    }
    public func recordInsert(_ key: ExpertKey) { if lastUse[key] == nil { recordAccess(key) } }
    public func recordRemoval(_ key: ExpertKey) { lastUse[key] = nil }
    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        candidates.min { (lastUse[$0] ?? 0, $0.layer, $0.expert) < (lastUse[$1] ?? 0, $1.layer, $1.expert) }!
    }
    func lastUse(of key: ExpertKey) -> Int { lastUse[key] ?? 0 }
}

/// Least frequently used: evict the expert requested fewest times so far (counts survive
/// eviction, so a popular expert that was pushed out comes back with its history); ties go
/// to the least recently used.
public final class LFUPolicy: CachePolicy {
    public let name = "lfu"
    private var counts: [ExpertKey: Int] = [:]
    private let recency = LRUPolicy()
    public init() {}
    public func recordAccess(_ key: ExpertKey) {
        counts[key, default: 0] += 1
        recency.recordAccess(key)
    }
    public func recordInsert(_ key: ExpertKey) { recency.recordInsert(key) }
    public func recordRemoval(_ key: ExpertKey) {}
    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        candidates.min { (counts[$0] ?? 0, recency.lastUse(of: $0)) < (counts[$1] ?? 0, recency.lastUse(of: $1)) }!
    }
}

/// First in, first out: evict the expert that became resident earliest.
public final class FIFOPolicy: CachePolicy {
    public let name = "fifo"
    private var clock = 0
    private var inserted: [ExpertKey: Int] = [:]
    public init() {}
    public func recordAccess(_ key: ExpertKey) {}
    public func recordInsert(_ key: ExpertKey) {
        clock += 1
        inserted[key] = clock
    }
    public func recordRemoval(_ key: ExpertKey) { inserted[key] = nil }
    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        candidates.min { (inserted[$0] ?? 0, $0.layer, $0.expert) < (inserted[$1] ?? 0, $1.layer, $1.expert) }!
    }
}

/// EdgeMoE's eviction score (docs/design.md §4): activation frequency divided by the forward
/// layer distance from the layer executing now, `(layer − current) mod L`. Experts of layers
/// that just ran are farthest ahead (distance L−1) and go first; rarely used ones before
/// popular ones. The published formula divides by zero for the current layer; its experts
/// (distance 0) score infinite and are kept. Ties go to the least recently used.
public final class EdgeMoEPolicy: CachePolicy {
    public let name = "edgemoe"
    public let layerCount: Int
    private var counts: [ExpertKey: Int] = [:]
    private let recency = LRUPolicy()
    public init(layerCount: Int) { self.layerCount = max(layerCount, 1) }
    public func recordAccess(_ key: ExpertKey) {
        counts[key, default: 0] += 1
        recency.recordAccess(key)
    }
    public func recordInsert(_ key: ExpertKey) { recency.recordInsert(key) }
    public func recordRemoval(_ key: ExpertKey) {}

    public func score(_ key: ExpertKey, currentLayer: Int) -> Double {
        let distance = ((key.layer - currentLayer) % layerCount + layerCount) % layerCount
        return distance == 0 ? .infinity : Double(counts[key] ?? 0) / Double(distance)
    }

    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        candidates.min {
            let a = score($0, currentLayer: currentLayer), b = score($1, currentLayer: currentLayer)
            return a != b ? a < b : recency.lastUse(of: $0) < recency.lastUse(of: $1)
        }!
    }
}

/// Frequency with recency decay: each request adds 1 to its expert's count and every count
/// halves every ``halfLife`` requests; evict the lowest. Between LFU (an infinite half-life),
/// which clings to experts that were popular long ago, and LRU (a half-life near zero), which
/// forgets that an expert is popular. A candidate of ``AutoPolicy``; the default half-life
/// (256 requests, about 32 tokens of a 4-layer top-2 model) was chosen on the demo model's
/// calibration text (docs/design.md §4). Ties go to the least recently used.
public final class DecayedLFUPolicy: CachePolicy {
    public let name = "dlfu"
    public let halfLife: Double
    private var clock = 0.0
    /// Per expert: `log2(count at its last request) + last request / halfLife`; comparing these
    /// compares the decayed counts now without touching every expert on every request.
    private var logScore: [ExpertKey: Double] = [:]
    private let recency = LRUPolicy()

    public init(halfLife: Int = 256) { self.halfLife = Double(max(halfLife, 1)) }

    public func recordAccess(_ key: ExpertKey) {
        clock += 1
        recency.recordAccess(key)
        let now = clock / halfLife
        // Decayed count now, plus this request.
        let count = logScore[key].map { exp2($0 - now) } ?? 0
        logScore[key] = log2(count + 1) + now
    }

    public func recordInsert(_ key: ExpertKey) { recency.recordInsert(key) }
    public func recordRemoval(_ key: ExpertKey) {}

    public func victim(among candidates: [ExpertKey], currentLayer: Int) -> ExpertKey {
        candidates.min {
            (logScore[$0] ?? -.infinity, recency.lastUse(of: $0)) < (logScore[$1] ?? -.infinity, recency.lastUse(of: $1))
        }!
    }
}
