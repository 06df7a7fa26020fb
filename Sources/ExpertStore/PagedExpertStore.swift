import Foundation
import ModelFormats
import Quantization

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
    public var poolCapacity = 0
    public var peakPoolBytes = 0
    public var directIO = false

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

/// Experts paged into a fixed ``ExpertPool`` under a ``CachePolicy``, on demand and ahead of
/// demand (``prefetch(_:currentLayer:)``) by loader threads.
///
/// `withExpert` pins the expert for the duration of the call: a pinned expert is never
/// evicted, so the weights handed to the body stay valid until it returns. Loads read with
/// ``DirectReader`` (O_DIRECT or fadvise), verify the record's checksum when the source has
/// one, and decode (LZ4, byte-plane shuffle) straight into the pool. Demand loads run on the
/// calling thread and never queue behind prefetches. Thread-safe.
public final class PagedExpertStore: ExpertProvider, @unchecked Sendable {
    public let catalog: ExpertCatalog
    public let pool: ExpertPool
    public let policy: CachePolicy
    /// Prefetched bytes that may sit in the pool unused (a cap so guesses cannot crowd out hits).
    public var maxPrefetchBytes: Int
    private let readers: [DirectReader]
    /// Buffers for demand loads; concurrent callers each take their own (normally there is one).
    private var demandBuffers: [IOBuffers]
    private let bufferSizes: (staging: Int, scratch: Int)
    private let condition = NSCondition()
    private var resident: [ExpertKey: Resident] = [:]
    private var stats = ExpertStoreMetrics()
    private var queue: [(key: ExpertKey, offset: Int)] = []
    private var loaders: [Thread] = []
    private var loaderBuffers: [IOBuffers] = []
    private var stopping = false
    private var prefetchedUnusedBytes = 0
    /// Every request in order since the store opened, for traces and for replaying cache
    /// policies (not cleared by ``resetMetrics()``).
    public private(set) var accessLog: [ExpertKey] = []
    /// Index into ``accessLog`` where the current metrics start.
    public private(set) var measuredFrom = 0
    public var recordsAccesses = false
    /// Receives every ``ExpertStoreEvent`` (nil: none are built, nothing is timed for them).
    /// Called with the store's lock held, from the executor and loader threads: keep it short
    /// and do not call back into the store.
    private var eventSink: ((ExpertStoreEvent) -> Void)?

    /// Installs (or, with nil, removes) the event sink.
    public func setEventSink(_ sink: ((ExpertStoreEvent) -> Void)?) {
        condition.lock()
        eventSink = sink
        condition.unlock()
    }

    private static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    struct Resident {
        var offset: Int
        var size: Int
        var pins: Int
        var weights: ExpertWeights?
        var loading: Bool
        var prefetched: Bool
        var used: Bool
    }

    /// Staging and decode buffers of one loading thread.
    final class IOBuffers {
        let staging: UnsafeMutableRawPointer
        let stagingSize: Int
        let scratch: UnsafeMutableRawPointer
        let scratchSize: Int
        init(stagingSize: Int, scratchSize: Int) {
            self.stagingSize = stagingSize
            self.scratchSize = scratchSize
            staging = .allocate(byteCount: stagingSize, alignment: DirectReader.alignment)
            scratch = .allocate(byteCount: scratchSize, alignment: 64)
        }
        deinit {
            staging.deallocate()
            scratch.deallocate()
        }
    }

    /// What one load cost, merged into the metrics under the lock.
    struct LoadCost {
        var bytes = 0, read = 0.0, verify = 0.0, decode = 0.0
    }

    /// - Parameters:
    ///   - capacity: bytes of the pool (rounded down to 4096).
    ///   - policy: which expert to evict when the pool is full.
    ///   - loaderThreads: threads that load prefetched experts (0: no prefetching).
    public convenience init(source: ModelSource, capacity: Int, policy: CachePolicyKind = .lru, loaderThreads: Int = 0, maxPrefetchBytes: Int? = nil) throws {
        try self.init(catalog: ExpertCatalog(source: source), capacity: capacity, policy: policy, loaderThreads: loaderThreads,
                      maxPrefetchBytes: maxPrefetchBytes)
    }

    /// The same for a catalog the caller already built (it sized the pool from it).
    public init(catalog: ExpertCatalog, capacity: Int, policy: CachePolicyKind = .lru, loaderThreads: Int = 0, maxPrefetchBytes: Int? = nil) throws {
        self.catalog = catalog
        pool = try ExpertPool(capacity: capacity)
        self.policy = policy.make(layerCount: catalog.layerCount)
        self.maxPrefetchBytes = maxPrefetchBytes ?? capacity / 2
        readers = try catalog.files.map { try DirectReader(path: $0) }
        bufferSizes = (try PagedExpertStore.stagingSize(catalog), PagedExpertStore.scratchSize(catalog))
        demandBuffers = [IOBuffers(stagingSize: bufferSizes.staging, scratchSize: bufferSizes.scratch)]
        stats.poolCapacity = pool.capacity
        stats.directIO = readers.allSatisfy(\.direct)
        for i in 0..<max(0, loaderThreads) {
            let buffers = IOBuffers(stagingSize: bufferSizes.staging, scratchSize: bufferSizes.scratch)
            loaderBuffers.append(buffers)
            // The thread holds the store only while it handles one job, so the store can go away.
            let thread = Thread { [weak self] in
                while let store = self, store.loaderStep(buffers, thread: i + 1) {}
            }
            thread.name = "moe-loader-\(i)"
            loaders.append(thread)
            thread.start()
        }
    }

    deinit {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Stops the loader threads (the store keeps serving demand loads).
    public func stopLoaders() {
        condition.lock()
        stopping = true
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    static func stagingSize(_ catalog: ExpertCatalog) throws -> Int {
        guard let size = alignUp(catalog.largestRead, to: DirectReader.alignment) else {
            throw ExpertStoreError.cannotReserve(bytes: catalog.largestRead)
        }
        return max(DirectReader.alignment, size)
    }

    static func scratchSize(_ catalog: ExpertCatalog) -> Int {
        max(1, (0..<catalog.layerCount).flatMap { l in (0..<catalog.expertCount).compactMap { catalog.entry(ExpertKey(layer: l, expert: $0))?.decodedLength } }.max() ?? 1)
    }

    /// Bytes the store allocates besides the pool (staging and decode buffers of every thread).
    public var overheadBytes: Int { (1 + loaderBuffers.count) * (bufferSizes.staging + bufferSizes.scratch) }

    public var metrics: ExpertStoreMetrics {
        condition.lock()
        defer { condition.unlock() }
        var m = stats
        m.peakPoolBytes = pool.peakUsedBytes
        return m
    }

    public func resetMetrics() {
        condition.lock()
        let capacity = stats.poolCapacity, direct = stats.directIO
        stats = ExpertStoreMetrics()
        stats.poolCapacity = capacity
        stats.directIO = direct
        measuredFrom = accessLog.count
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
        if recordsAccesses { accessLog.append(key) }
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
        condition.unlock()
        var cost = LoadCost()
        let start = eventSink == nil ? 0 : PagedExpertStore.now
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
        guard !loaders.isEmpty, !stopping else { return [] }
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

    private func load(_ key: ExpertKey, _ entry: ExpertCatalog.Entry, into destination: UnsafeMutableRawPointer, buffers: IOBuffers, cost: inout LoadCost) throws -> ExpertWeights {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        switch entry.location {
        case let .record(record, readLength):
            let path = catalog.files[0]
            var t0 = clock()
            let direct = record.compression == .none
            let target = direct ? destination : buffers.staging
            guard readLength <= (direct ? ExpertPool.rounded(entry.decodedLength) : buffers.stagingSize) else {
                throw ExpertStoreError.corruptRecord(path: path, layer: key.layer, expert: key.expert, offset: record.offset, reason: "record longer than its decoded size")
            }
            try readers[0].read(offset: record.offset, length: readLength, into: target)
            cost.bytes += readLength
            cost.read += clock() - t0
            t0 = clock()
            let found = XXH64.hash(UnsafeRawBufferPointer(start: target, count: record.storedLength))
            cost.verify += clock() - t0
            guard found == record.checksum else {
                throw ExpertStoreError.checksumMismatch(path: path, layer: key.layer, expert: key.expert, offset: record.offset, expected: record.checksum, found: found)
            }
            if !direct {
                t0 = clock()
                do {
                    try LZ4Codec.decode(UnsafeRawBufferPointer(start: buffers.staging, count: record.storedLength), compression: record.compression,
                                        into: UnsafeMutableRawBufferPointer(start: destination, count: record.decodedLength),
                                        scratch: UnsafeMutableRawBufferPointer(start: buffers.scratch, count: buffers.scratchSize),
                                        what: "expert \(key.expert) of layer \(key.layer)")
                } catch {
                    throw ExpertStoreError.corruptRecord(path: path, layer: key.layer, expert: key.expert, offset: record.offset, reason: "\(error)")
                }
                cost.decode += clock() - t0
            }
        case let .slabs(slabs):
            for (slab, tensor) in zip(slabs, entry.tensors) {
                let t0 = clock()
                let a = DirectReader.alignment
                let start = slab.offset / a * a
                // The catalog found the slab inside a mapped file, so this cannot overflow.
                guard let end = alignUp(slab.offset + slab.length, to: a) else {
                    throw ExpertStoreError.readFailed(path: catalog.files[slab.file], offset: slab.offset, length: slab.length, reason: "range too large")
                }
                var done = start
                var copied = 0
                // Staging holds the widest slab plus alignment slack; read in staging-sized pieces.
                while done < end {
                    let chunk = min(buffers.stagingSize, end - done)
                    try readers[slab.file].read(offset: done, length: chunk, into: buffers.staging)
                    cost.bytes += chunk
                    let lo = max(slab.offset, done), hi = min(slab.offset + slab.length, done + chunk)
                    if lo < hi {
                        (destination + tensor.offset + copied).copyMemory(from: buffers.staging + (lo - done), byteCount: hi - lo)
                        copied += hi - lo
                    }
                    done += chunk
                }
                cost.read += clock() - t0
            }
        }
        let views = zip(ExpertTensor.allCases, entry.tensors).map { kind, t in
            TensorView(name: kind.weightName(layer: key.layer, expert: key.expert).ggufName, type: t.type, shape: t.shape,
                       data: UnsafeRawBufferPointer(start: destination + t.offset, count: t.length), owner: self)
        }
        return ExpertWeights(gate: views[0], up: views[1], down: views[2])
    }
}
