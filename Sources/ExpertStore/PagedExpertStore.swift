import Foundation
import ModelFormats
import Quantization

/// Counters of a paged run, reported by `moe run/bench/generate` and in `--json`.
public struct ExpertStoreMetrics: Codable, Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var evictions = 0
    public var bytesRead = 0
    /// Seconds spent in reads, checksum verification and decoding.
    public var readSeconds = 0.0
    public var verifySeconds = 0.0
    public var decodeSeconds = 0.0
    /// Seconds the executor waited for an expert that was not resident.
    public var stallSeconds = 0.0
    public var poolCapacity = 0
    public var peakPoolBytes = 0
    public var directIO = false

    public var hitRate: Double { hits + misses == 0 ? 1 : Double(hits) / Double(hits + misses) }
}

/// Experts paged on demand into a fixed ``ExpertPool`` under a ``CachePolicy``.
///
/// `withExpert` pins the expert for the duration of the call: a pinned expert is never
/// evicted, so the weights handed to the body stay valid until it returns. Loads read with
/// ``DirectReader`` (O_DIRECT or fadvise), verify the record's checksum when the source has
/// one, and decode (LZ4, byte-plane shuffle) straight into the pool. Thread-safe.
public final class PagedExpertStore: ExpertProvider, @unchecked Sendable {
    public let catalog: ExpertCatalog
    public let pool: ExpertPool
    public let policy: CachePolicy
    private let readers: [DirectReader]
    private let staging: UnsafeMutableRawPointer
    private let stagingSize: Int
    private let scratch: UnsafeMutableRawPointer
    private let scratchSize: Int
    private let lock = NSLock()
    private var resident: [ExpertKey: Resident] = [:]
    private var stats = ExpertStoreMetrics()
    /// Every request in order, for traces and for replaying cache policies.
    public private(set) var accessLog: [ExpertKey] = []
    public var recordsAccesses = false

    struct Resident {
        var offset: Int
        var size: Int
        var pins: Int
        var weights: ExpertWeights
    }

    /// - Parameters:
    ///   - capacity: bytes of the pool (rounded down to 4096).
    ///   - policy: which expert to evict when the pool is full.
    public init(source: ModelSource, capacity: Int, policy: CachePolicyKind = .lru) throws {
        catalog = try ExpertCatalog(source: source)
        pool = try ExpertPool(capacity: capacity)
        self.policy = policy.make(layerCount: source.configuration.layerCount)
        readers = try catalog.files.map { try DirectReader(path: $0) }
        stagingSize = max(DirectReader.alignment, (catalog.largestRead + DirectReader.alignment - 1) / DirectReader.alignment * DirectReader.alignment)
        staging = UnsafeMutableRawPointer.allocate(byteCount: stagingSize, alignment: DirectReader.alignment)
        let catalog = self.catalog
        scratchSize = max(1, (0..<catalog.layerCount).flatMap { l in (0..<catalog.expertCount).compactMap { catalog.entry(ExpertKey(layer: l, expert: $0))?.decodedLength } }.max() ?? 1)
        scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 64)
        stats.poolCapacity = pool.capacity
        stats.directIO = readers.allSatisfy(\.direct)
    }

    deinit {
        staging.deallocate()
        scratch.deallocate()
    }

    /// Bytes the store allocates besides the pool (staging and decode buffers).
    public var overheadBytes: Int { stagingSize + scratchSize }

    public var metrics: ExpertStoreMetrics {
        lock.lock()
        defer { lock.unlock() }
        var m = stats
        m.peakPoolBytes = pool.peakUsedBytes
        return m
    }

    public func resetMetrics() {
        lock.lock()
        let capacity = stats.poolCapacity, direct = stats.directIO
        stats = ExpertStoreMetrics()
        stats.poolCapacity = capacity
        stats.directIO = direct
        accessLog.removeAll()
        lock.unlock()
    }

    /// Experts resident now.
    public var residentKeys: Set<ExpertKey> {
        lock.lock()
        defer { lock.unlock() }
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
        lock.lock()
        defer { lock.unlock() }
        guard let entry = catalog.entry(key) else { throw ExpertStoreError.noSuchExpert(layer: key.layer, expert: key.expert) }
        policy.recordAccess(key)
        if recordsAccesses { accessLog.append(key) }
        if var r = resident[key] {
            r.pins += 1
            resident[key] = r
            stats.hits += 1
            return r.weights
        }
        stats.misses += 1
        let start = DispatchTime.now().uptimeNanoseconds
        defer { stats.stallSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
        let offset = try makeRoom(for: entry.decodedLength, layer: key.layer)
        do {
            let weights = try load(key, entry, into: pool.base + offset)
            resident[key] = Resident(offset: offset, size: entry.decodedLength, pins: 1, weights: weights)
            policy.recordInsert(key)
            return weights
        } catch {
            pool.release(offset: offset, size: entry.decodedLength)
            throw error
        }
    }

    public func release(_ key: ExpertKey) {
        lock.lock()
        if var r = resident[key] {
            r.pins -= 1
            resident[key] = r
        }
        lock.unlock()
    }

    /// Evicts every unpinned expert (their bytes return to the pool). Returns how many.
    @discardableResult
    public func evictAll() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let victims = resident.filter { $0.value.pins == 0 }
        for (key, r) in victims {
            resident.removeValue(forKey: key)
            pool.release(offset: r.offset, size: r.size)
            policy.recordRemoval(key)
        }
        return victims.count
    }

    /// Evicts unpinned experts in policy order until a block of `size` fits; returns its offset.
    private func makeRoom(for size: Int, layer: Int) throws -> Int {
        while true {
            if let offset = pool.allocate(size) { return offset }
            let candidates = resident.filter { $0.value.pins == 0 }.map(\.key)
            guard !candidates.isEmpty else {
                let pinned = resident.values.reduce(0) { $0 + ExpertPool.rounded($1.size) }
                throw ExpertStoreError.poolTooSmall(needed: pinned + ExpertPool.rounded(size), capacity: pool.capacity)
            }
            let victim = policy.victim(among: candidates, currentLayer: layer)
            if let r = resident.removeValue(forKey: victim) {
                pool.release(offset: r.offset, size: r.size)
                policy.recordRemoval(victim)
                stats.evictions += 1
            }
        }
    }

    private func load(_ key: ExpertKey, _ entry: ExpertCatalog.Entry, into destination: UnsafeMutableRawPointer) throws -> ExpertWeights {
        let clock = { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        switch entry.location {
        case let .record(record):
            let path = catalog.files[0]
            var t0 = clock()
            let direct = record.compression == .none
            let target = direct ? destination : staging
            guard record.paddedLength <= (direct ? ExpertPool.rounded(entry.decodedLength) : stagingSize) else {
                throw ExpertStoreError.corruptRecord(path: path, layer: key.layer, expert: key.expert, offset: record.offset, reason: "record longer than its decoded size")
            }
            try readers[0].read(offset: record.offset, length: record.paddedLength, into: target)
            stats.bytesRead += record.paddedLength
            stats.readSeconds += clock() - t0
            t0 = clock()
            let found = XXH64.hash(UnsafeRawBufferPointer(start: target, count: record.storedLength))
            stats.verifySeconds += clock() - t0
            guard found == record.checksum else {
                throw ExpertStoreError.checksumMismatch(path: path, layer: key.layer, expert: key.expert, offset: record.offset, expected: record.checksum, found: found)
            }
            if !direct {
                t0 = clock()
                do {
                    try LZ4Codec.decode(UnsafeRawBufferPointer(start: staging, count: record.storedLength), compression: record.compression,
                                        into: UnsafeMutableRawBufferPointer(start: destination, count: record.decodedLength),
                                        scratch: UnsafeMutableRawBufferPointer(start: scratch, count: scratchSize), what: "expert \(key.expert) of layer \(key.layer)")
                } catch {
                    throw ExpertStoreError.corruptRecord(path: path, layer: key.layer, expert: key.expert, offset: record.offset, reason: "\(error)")
                }
                stats.decodeSeconds += clock() - t0
            }
        case let .slabs(slabs):
            for (slab, tensor) in zip(slabs, entry.tensors) {
                let t0 = clock()
                let a = DirectReader.alignment
                let start = slab.offset / a * a
                let end = (slab.offset + slab.length + a - 1) / a * a
                var done = start
                // Staging holds the widest slab plus alignment slack; read in staging-sized pieces.
                var copied = 0
                while done < end {
                    let chunk = min(stagingSize, end - done)
                    try readers[slab.file].read(offset: done, length: chunk, into: staging)
                    stats.bytesRead += chunk
                    let lo = max(slab.offset, done), hi = min(slab.offset + slab.length, done + chunk)
                    if lo < hi {
                        (destination + tensor.offset + copied).copyMemory(from: staging + (lo - done), byteCount: hi - lo)
                        copied += hi - lo
                    }
                    done += chunk
                }
                stats.readSeconds += clock() - t0
            }
        }
        let names = ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"]
        let views = zip(names, entry.tensors).map { name, t in
            TensorView(name: "blk.\(key.layer).\(name).weight[\(key.expert)]", type: t.type, shape: t.shape,
                       data: UnsafeRawBufferPointer(start: destination + t.offset, count: t.length), owner: self)
        }
        return ExpertWeights(gate: views[0], up: views[1], down: views[2])
    }
}
