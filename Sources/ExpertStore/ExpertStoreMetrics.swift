import Foundation

/// Counters of a paged run, reported by `moe run/bench/generate` and in `--json`.
public struct ExpertStoreMetrics: Codable, Sendable, Equatable {
    /// Requests served from the pool (including experts a prefetch had started loading).
    public var hits = 0
    /// Requests that had to load the expert on the spot.
    public var misses = 0
    public var evictions = 0
    public var bytesRead = 0
    /// Seconds spent in reads, checksum verification and decoding (all threads).
    public var readSeconds = 0.0
    public var verifySeconds = 0.0
    public var decodeSeconds = 0.0
    /// Seconds the executor waited for an expert that was not ready (misses, and prefetches
    /// still in flight).
    public var stallSeconds = 0.0
    /// Prefetches issued, used before eviction, and evicted unused.
    public var prefetchIssued = 0
    public var prefetchUseful = 0
    public var prefetchWasted = 0
    public var prefetchBytes = 0
    /// Requests that found their expert still loading (the prefetch was late).
    public var prefetchLate = 0
    /// Misses computed from the expert's low-bit copy (`--on-miss lowbit`, lossy), and the bytes
    /// those copies took to read (also in ``bytesRead``).
    public var lowbitMisses = 0
    public var lowbitBytesRead = 0
    public var poolCapacity = 0
    public var peakPoolBytes = 0
    public var directIO = false
    /// Reads in flight per expert load (`--read-depth`).
    public var readDepth = 1
    /// The disk's direct-read bandwidth at ``readDepth``, bytes/s, probed on the model file
    /// once the store has read (nil before, or when the file is too small to probe).
    public var diskBytesPerSecond: Double?

    /// Bytes/s of the store's reads (bytes read over the seconds spent reading them).
    public var readBytesPerSecond: Double { readSeconds > 0 ? Double(bytesRead) / readSeconds : 0 }
    /// The reads' speed as a share of the disk's probed bandwidth (nil without a probe).
    public var readEfficiency: Double? { diskBytesPerSecond.flatMap { $0 > 0 && readSeconds > 0 ? readBytesPerSecond / $0 : nil } }

    public var hitRate: Double { hits + misses == 0 ? 1 : Double(hits) / Double(hits + misses) }
}

/// What happened inside a ``PagedExpertStore``, reported to its event sink (traces). Times are
/// `DispatchTime` uptime nanoseconds.
public enum ExpertStoreEvent: Sendable {
    /// How a request was served.
    public enum Outcome: UInt8, Sendable, Codable {
        /// Resident and ready.
        case hit = 0
        /// Loaded on the spot by the requesting thread.
        case miss = 1
        /// A prefetch had started loading it; the request waited for the rest.
        case late = 2
    }
    /// One request (``PagedExpertStore/acquire(_:)``), reported when it is served.
    /// `prefetched`: the first use of an expert a prefetch brought in; `stall`: nanoseconds
    /// the caller waited (load or late prefetch).
    case access(key: ExpertKey, outcome: Outcome, prefetched: Bool, requested: UInt64, stall: UInt64)
    /// One load, on the requesting thread (`thread` 0, a demand load) or loader thread
    /// `thread` (1, 2, …; a prefetch). `bytes`: bytes read from disk; `failed`: it threw.
    case load(key: ExpertKey, prefetch: Bool, thread: Int, start: UInt64, end: UInt64, bytes: Int, failed: Bool)
    /// The predictor asked for `keys` while layer `layer` ran; `queued` is what fitted.
    case prefetchRequest(layer: Int, keys: [ExpertKey], queued: [ExpertKey], time: UInt64)
    /// An expert left the pool; `unusedPrefetch`: a prefetch nobody used.
    case eviction(key: ExpertKey, unusedPrefetch: Bool, time: UInt64)
}
