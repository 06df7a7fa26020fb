import Foundation
import ModelFormats
import Quantization

/// Experts paged into a fixed ``ExpertPool`` under a ``CachePolicy``, on demand and ahead of
/// demand (``prefetch(_:currentLayer:)``) by loader threads.
///
/// `withExpert` pins the expert for the duration of the call: a pinned expert is never
/// evicted, so the weights handed to the body stay valid until it returns. Loads read with
/// ``DirectReader`` (O_DIRECT or fadvise), verify the record's checksum when the source has
/// one, and decode (LZ4, byte-plane shuffle) straight into the pool. Demand loads run on the
/// calling thread and never queue behind prefetches. Thread-safe.
///
/// `@unchecked Sendable` because of the lock discipline, which the compiler cannot see: every
/// `var` below, the ``pool``'s free list and the ``policy``'s state are read and written only
/// with `condition` locked (a condition variable, because demand loads wait for prefetches).
/// The `let`s are immutable. The bytes of a pool block are written, with the lock released,
/// only by the one load that owns the block while its entry is marked loading; a buffer set
/// is used by one thread at a time (see ``IOBuffers``).
public final class PagedExpertStore: ExpertProvider, @unchecked Sendable {
    public let catalog: ExpertCatalog
    /// The arena. Not thread-safe itself: read its `capacity` freely; anything else only while
    /// no other thread uses the store, or through ``withPool(_:)``.
    public let pool: ExpertPool
    public let policy: CachePolicy
    /// Prefetched bytes that may sit in the pool unused (a cap so guesses cannot crowd out hits).
    public let maxPrefetchBytes: Int
    let readers: [DirectReader]
    /// Several pieces of each expert read in flight (`--read-depth`).
    let readQueue: ReadQueue
    /// Buffers for demand loads; concurrent callers each take their own (normally there is one).
    private var demandBuffers: [IOBuffers]
    let bufferSizes: (staging: Int, scratch: Int)
    /// One buffer set per loader thread (none: no prefetching).
    private let loaderBuffers: [IOBuffers]
    private let condition = NSCondition()
    private var resident: [ExpertKey: Resident] = [:]
    private var stats = ExpertStoreMetrics()
    private var queue: [(key: ExpertKey, offset: Int)] = []
    private var stopping = false
    private var prefetchedUnusedBytes = 0
    private var log: [ExpertKey] = []
    private var logStart = 0
    private var logging = false
    /// Receives every ``ExpertStoreEvent`` (nil: none are built, nothing is timed for them).
    /// Called with the store's lock held, from the executor and loader threads: keep it short
    /// and do not call back into the store.
    private var eventSink: (@Sendable (ExpertStoreEvent) -> Void)?

    /// Installs (or, with nil, removes) the event sink.
    public func setEventSink(_ sink: (@Sendable (ExpertStoreEvent) -> Void)?) {
        locked { eventSink = sink }
    }

    /// Every request in order since the store opened (while ``recordsAccesses``), for traces
    /// and for replaying cache policies (not cleared by ``resetMetrics()``).
    public var accessLog: [ExpertKey] { locked { log } }
    /// Index into ``accessLog`` where the current metrics start.
    public var measuredFrom: Int { locked { logStart } }
    /// Whether requests are appended to ``accessLog``.
    public var recordsAccesses: Bool {
        get { locked { logging } }
        set { locked { logging = newValue } }
    }

    /// Runs `body` on the pool with the store's lock held, so that loads and evictions on other
    /// threads cannot change its free list meanwhile (for checks while loaders run).
    public func withPool<R>(_ body: (ExpertPool) throws -> R) rethrows -> R {
        try locked { try body(pool) }
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }

    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    struct Resident {
        var offset: Int
        var size: Int
        var pins: Int
        var weights: ExpertWeights?
        var loading: Bool
        var prefetched: Bool
        var used: Bool
    }


    /// - Parameters:
    ///   - capacity: bytes of the pool (rounded down to 4096).
    ///   - policy: which expert to evict when the pool is full.
    ///   - loaderThreads: threads that load prefetched experts (0: no prefetching).
    ///   - readDepth: reads in flight per expert load (``ReadQueue``).
    public convenience init(source: ModelSource, capacity: Int, policy: CachePolicyKind = .auto, loaderThreads: Int = 0, maxPrefetchBytes: Int? = nil,
                            readDepth: Int = ReadQueue.defaultDepth) throws {
        try self.init(catalog: ExpertCatalog(source: source), capacity: capacity, policy: policy, loaderThreads: loaderThreads,
                      maxPrefetchBytes: maxPrefetchBytes, readDepth: readDepth)
    }

    /// The same for a catalog the caller already built (it sized the pool from it).
    public init(catalog: ExpertCatalog, capacity: Int, policy: CachePolicyKind = .auto, loaderThreads: Int = 0, maxPrefetchBytes: Int? = nil,
                readDepth: Int = ReadQueue.defaultDepth) throws {
        self.catalog = catalog
        pool = try ExpertPool(capacity: capacity)
        self.policy = policy.make(layerCount: catalog.layerCount)
        self.maxPrefetchBytes = maxPrefetchBytes ?? capacity / 2
        readers = try catalog.files.map { try DirectReader(path: $0) }
        readQueue = ReadQueue(depth: readDepth)
        let sizes = (staging: try PagedExpertStore.stagingSize(catalog), scratch: PagedExpertStore.scratchSize(catalog))
        bufferSizes = sizes
        demandBuffers = [IOBuffers(stagingSize: sizes.staging, scratchSize: sizes.scratch)]
        loaderBuffers = (0..<max(0, loaderThreads)).map { _ in IOBuffers(stagingSize: sizes.staging, scratchSize: sizes.scratch) }
        stats.poolCapacity = pool.capacity
        stats.directIO = readers.allSatisfy(\.direct)
        stats.readDepth = readQueue.depth
        for (i, buffers) in loaderBuffers.enumerated() {
            // The thread holds the store only while it handles one job, so the store can go away.
            let thread = Thread { [weak self] in
                while let store = self, store.loaderStep(buffers, thread: i + 1) {}
            }
            thread.name = "moe-loader-\(i)"
            thread.start()
        }
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        readQueue.stop()
    }

    /// Stops the loader threads (the store keeps serving demand loads).
    public func stopLoaders() {
        condition.lock()
        stopping = true
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    /// Bytes the store allocates besides the pool (staging and decode buffers of every thread).
    public var overheadBytes: Int { (1 + loaderBuffers.count) * (bufferSizes.staging + bufferSizes.scratch) }

    /// The counters so far. Once the store has read from disk, the first call also measures the
    /// disk's direct-read bandwidth at the store's read depth (``probeDisk()``, once per process).
    public var metrics: ExpertStoreMetrics {
        let bandwidth = locked { stats.bytesRead } > 0 ? probeDisk() : nil
        condition.lock()
        defer { condition.unlock() }
        var m = stats
        m.peakPoolBytes = pool.peakUsedBytes
        m.diskBytesPerSecond = bandwidth
        return m
    }

    public func resetMetrics() {
        condition.lock()
        let capacity = stats.poolCapacity, direct = stats.directIO
        stats = ExpertStoreMetrics()
        stats.poolCapacity = capacity
        stats.directIO = direct
        stats.readDepth = readQueue.depth
        logStart = log.count
        condition.unlock()
    }

    /// Experts resident now (loaded or loading).
    public var residentKeys: Set<ExpertKey> {
        condition.lock()
        defer { condition.unlock() }
        return Set(resident.keys)
    }

    public func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R {
        let key = ExpertKey(layer: layer, expert: expert)
        let weights = try acquire(key)
        defer { release(key) }
        return try body(weights)
    }

    /// Makes `key` resident and pins it. Pair with ``release(_:)``.
    public func acquire(_ key: ExpertKey) throws -> ExpertWeights {
        condition.lock()
        defer { condition.unlock() }
        guard let entry = catalog.entry(key) else { throw ExpertStoreError.noSuchExpert(layer: key.layer, expert: key.expert) }
        policy.recordAccess(key)
        if logging { log.append(key) }
        let clock = DispatchTime.now().uptimeNanoseconds
        if var r = resident[key] {
            r.pins += 1
            let firstUseOfPrefetch = r.prefetched && !r.used
            if firstUseOfPrefetch {
                r.used = true
                stats.prefetchUseful += 1
                prefetchedUnusedBytes -= ExpertPool.rounded(r.size)
            }
            resident[key] = r
            stats.hits += 1
            if r.loading {
                stats.prefetchLate += 1
                while resident[key]?.loading == true { condition.wait() }
                let waited = DispatchTime.now().uptimeNanoseconds - clock
                stats.stallSeconds += Double(waited) * 1e-9
                guard let weights = resident[key]?.weights else {
                    // The prefetch failed (and was dropped): load it ourselves, which reports the error.
                    stats.hits -= 1
                    return try demandLoad(key, entry, clock: clock)
                }
                eventSink?(.access(key: key, outcome: .late, prefetched: firstUseOfPrefetch, requested: clock, stall: waited))
                return weights
            }
            eventSink?(.access(key: key, outcome: .hit, prefetched: firstUseOfPrefetch, requested: clock, stall: 0))
            return r.weights!  // ready entries always have weights
        }
        return try demandLoad(key, entry, clock: clock)
    }

    /// Loads a missing expert on the calling thread (lock held on entry and exit; released
    /// during I/O). The entry is pinned while loading so nothing evicts it.
    private func demandLoad(_ key: ExpertKey, _ entry: ExpertCatalog.Entry, clock: UInt64) throws -> ExpertWeights {
        stats.misses += 1
        defer { stats.stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - clock) * 1e-9 }
        let offset = try makeRoom(for: entry.decodedLength, layer: key.layer, protecting: [])
        resident[key] = Resident(offset: offset, size: entry.decodedLength, pins: 1, weights: nil, loading: true, prefetched: false, used: true)
        let buffers = demandBuffers.popLast() ?? IOBuffers(stagingSize: bufferSizes.staging, scratchSize: bufferSizes.scratch)
        let start = eventSink == nil ? 0 : PagedExpertStore.now
        condition.unlock()
        var cost = LoadCost()
        let result = Result { try load(key, entry, into: pool.base + offset, buffers: buffers, cost: &cost) }
        condition.lock()
        demandBuffers.append(buffers)
        merge(cost)
        if let eventSink {
            let end = PagedExpertStore.now
            eventSink(.load(key: key, prefetch: false, thread: 0, start: start, end: end, bytes: cost.bytes, failed: (try? result.get()) == nil))
        }
        switch result {
        case let .success(weights):
            resident[key]?.weights = weights
            resident[key]?.loading = false
            policy.recordInsert(key)
            condition.broadcast()
            if let eventSink {
                eventSink(.access(key: key, outcome: .miss, prefetched: false, requested: clock, stall: DispatchTime.now().uptimeNanoseconds - clock))
            }
            return weights
        case let .failure(error):
            resident.removeValue(forKey: key)
            pool.release(offset: offset, size: entry.decodedLength)
            condition.broadcast()
            throw error
        }
    }

    /// A demand buffer set for a caller outside a load (the disk probe); give it back with ``returnDemandBuffers(_:)``.
    func takeDemandBuffers() -> IOBuffers {
        locked { demandBuffers.popLast() } ?? IOBuffers(stagingSize: bufferSizes.staging, scratchSize: bufferSizes.scratch)
    }

    func returnDemandBuffers(_ buffers: IOBuffers) { locked { demandBuffers.append(buffers) } }

    /// `--on-miss lowbit` (``LowBitOnMiss``): pins `key` and returns its weights if it is
    /// resident (waiting for a read in flight, as ``acquire(_:)`` does); otherwise counts a miss
    /// served from a low-bit copy (``ExpertStoreMetrics/lowbitMisses``), queues the exact
    /// expert's read for later tokens on a loader thread, and returns nil with nothing pinned.
    public func acquireIfResident(_ key: ExpertKey) throws -> ExpertWeights? {
        condition.lock()
        guard resident[key] == nil else {
            condition.unlock()
            return try acquire(key)
        }
        guard catalog.entry(key) != nil else {
            condition.unlock()
            throw ExpertStoreError.noSuchExpert(layer: key.layer, expert: key.expert)
        }
        policy.recordAccess(key)
        if logging { log.append(key) }
        stats.misses += 1
        stats.lowbitMisses += 1
        eventSink?(.access(key: key, outcome: .miss, prefetched: false, requested: PagedExpertStore.now, stall: 0))
        // The exact expert's read, for later tokens: wanted, not a guess, so outside the prefetch
        // cap; like a prefetch it evicts no expert of this layer and no unused guess.
        if let entry = catalog.entry(key), !loaderBuffers.isEmpty, !stopping,
           let offset = try? makeRoom(for: entry.decodedLength, layer: key.layer, protecting: [], forPrefetch: true) {
            resident[key] = Resident(offset: offset, size: entry.decodedLength, pins: 0, weights: nil, loading: true, prefetched: false, used: true)
            queue.append((key, offset))
            condition.broadcast()
        }
        condition.unlock()
        return nil
    }

    /// Counts a low-bit copy's read (bytes from disk, seconds the pass waited for it).
    public func recordLowbitRead(bytes: Int, seconds: Double) {
        locked {
            stats.lowbitBytesRead += bytes
            stats.bytesRead += bytes
            stats.readSeconds += seconds
            stats.stallSeconds += seconds
        }
    }

    public func release(_ key: ExpertKey) {
        condition.lock()
        if var r = resident[key] {
            r.pins -= 1
            resident[key] = r
        }
        condition.unlock()
    }

    /// Starts loading `keys` (most wanted first) in the background, as far as the pool and the
    /// prefetch cap allow, without evicting pinned or loading experts, experts of
    /// `currentLayer`, or earlier prefetches not yet used. A wrong guess costs only its read.
    /// Returns the keys actually queued.
    @discardableResult
    public func prefetch(_ keys: [ExpertKey], currentLayer: Int) -> [ExpertKey] {
        condition.lock()
        defer { condition.unlock() }
        var queued: [ExpertKey] = []
        defer { eventSink?(.prefetchRequest(layer: currentLayer, keys: keys, queued: queued, time: PagedExpertStore.now)) }
        guard !loaderBuffers.isEmpty, !stopping else { return [] }
        for key in keys where resident[key] == nil {
            guard let entry = catalog.entry(key) else { continue }
            let size = ExpertPool.rounded(entry.decodedLength)
            guard prefetchedUnusedBytes + size <= maxPrefetchBytes else { break }
            guard let offset = try? makeRoom(for: entry.decodedLength, layer: currentLayer, protecting: Set(queued), forPrefetch: true) else { break }
            resident[key] = Resident(offset: offset, size: entry.decodedLength, pins: 0, weights: nil, loading: true, prefetched: true, used: false)
            prefetchedUnusedBytes += size
            stats.prefetchIssued += 1
            stats.prefetchBytes += size
            queue.append((key, offset))
            queued.append(key)
        }
        if !queued.isEmpty { condition.broadcast() }
        return queued
    }

    /// Waits (briefly) for one prefetch job and loads it. Returns false when the store stops.
    private func loaderStep(_ buffers: IOBuffers, thread: Int) -> Bool {
        condition.lock()
        if queue.isEmpty && !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 0.05)) }
        if stopping {
            condition.unlock()
            return false
        }
        guard !queue.isEmpty else {
            condition.unlock()
            return true
        }
        let job = queue.removeFirst()
        guard let entry = catalog.entry(job.key), resident[job.key]?.loading == true else {
            condition.unlock()
            return true
        }
        let start = eventSink == nil ? 0 : PagedExpertStore.now
        condition.unlock()
        var cost = LoadCost()
        let result = Result { try load(job.key, entry, into: pool.base + job.offset, buffers: buffers, cost: &cost) }
        condition.lock()
        merge(cost)
        if let eventSink {
            eventSink(.load(key: job.key, prefetch: true, thread: thread, start: start, end: PagedExpertStore.now, bytes: cost.bytes,
                            failed: (try? result.get()) == nil))
        }
        switch result {
        case let .success(weights):
            resident[job.key]?.weights = weights
            resident[job.key]?.loading = false
            policy.recordInsert(job.key)
        case .failure:
            // Drop it; a demand load will retry and report the error to the caller.
            if let r = resident.removeValue(forKey: job.key) {
                pool.release(offset: r.offset, size: r.size)
                if !r.used { prefetchedUnusedBytes -= ExpertPool.rounded(r.size) }
            }
        }
        condition.broadcast()
        condition.unlock()
        return true
    }

    private func merge(_ cost: LoadCost) {
        stats.bytesRead += cost.bytes
        stats.readSeconds += cost.read
        stats.verifySeconds += cost.verify
        stats.decodeSeconds += cost.decode
    }

    /// Evicts every unpinned, loaded expert (their bytes return to the pool). Returns how many.
    @discardableResult
    public func evictAll() -> Int {
        condition.lock()
        defer { condition.unlock() }
        let victims = resident.filter { $0.value.pins == 0 && !$0.value.loading }
        for (key, _) in victims { evict(key) }
        return victims.count
    }

    private func evict(_ key: ExpertKey) {
        guard let r = resident.removeValue(forKey: key) else { return }
        pool.release(offset: r.offset, size: r.size)
        policy.recordRemoval(key)
        let unused = r.prefetched && !r.used
        if unused {
            stats.prefetchWasted += 1
            prefetchedUnusedBytes -= ExpertPool.rounded(r.size)
        }
        eventSink?(.eviction(key: key, unusedPrefetch: unused, time: PagedExpertStore.now))
    }

    /// Evicts unpinned, loaded experts in policy order until a block of `size` fits; returns
    /// its offset. For a prefetch, experts of `layer` and unused prefetches are off limits too,
    /// and failure returns nil instead of throwing.
    private func makeRoom(for size: Int, layer: Int, protecting: Set<ExpertKey>, forPrefetch: Bool = false) throws -> Int {
        while true {
            if let offset = pool.allocate(size) { return offset }
            let candidates = resident.filter { key, r in
                r.pins == 0 && !r.loading && !protecting.contains(key)
                    && !(forPrefetch && (key.layer == layer || (r.prefetched && !r.used)))
            }.map(\.key)
            guard !candidates.isEmpty else {
                // A demand load never fails because of a guess: wait for in-flight prefetches to
                // land (unpinned, they become evictable), then try again.
                if !forPrefetch, resident.values.contains(where: { $0.loading && $0.pins == 0 }) {
                    condition.wait()
                    continue
                }
                let pinned = resident.values.filter { $0.pins > 0 || $0.loading }.reduce(0) { $0 + ExpertPool.rounded($1.size) }
                throw ExpertStoreError.poolTooSmall(needed: pinned + ExpertPool.rounded(size), capacity: pool.capacity)
            }
            let victim = policy.victim(among: candidates, currentLayer: layer)
            evict(victim)
            stats.evictions += 1
        }
    }
}
