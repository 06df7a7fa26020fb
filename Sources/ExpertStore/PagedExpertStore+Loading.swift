import Foundation
import ModelFormats
import Quantization

/// Reading one expert into its pool block: buffers, direct reads, checksum verification, decoding.
extension PagedExpertStore {
    /// Staging and decode buffers of one loading thread.
    ///
    /// `@unchecked Sendable` (raw pointers): one thread uses a buffer set at a time. Each loader
    /// thread has its own; a demand load pops one from the store's list under the lock and
    /// pushes it back under the lock when done.
    final class IOBuffers: @unchecked Sendable {
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

    /// The disk's direct-read bandwidth (bytes/s) at this store's read depth, in pieces as long
    /// as those of its largest expert read, measured on its first file with a demand staging
    /// buffer (no memory beyond the plan); cached per process (``DiskProbe``). Nil when the
    /// file is smaller than one probe piece or unreadable.
    public func probeDisk() -> Double? {
        guard let path = catalog.files.first else { return nil }
        let a = DirectReader.alignment
        let piece = min(readQueue.pieces(offset: 0, length: catalog.largestRead).map(\.length).max() ?? a,
                        bufferSizes.staging / readQueue.depth / a * a)
        guard piece >= a else { return nil }
        let buffers = takeDemandBuffers()
        defer { returnDemandBuffers(buffers) }
        return DiskProbe.bandwidth(path: path, depth: readQueue.depth, piece: piece / a * a, buffer: buffers.staging)
    }

    private static func entries(_ catalog: ExpertCatalog) -> [ExpertCatalog.Entry] {
        (0..<catalog.layerCount).flatMap { l in (0..<catalog.expertCount).compactMap { catalog.entry(ExpertKey(layer: l, expert: $0)) } }
    }

    /// The staging buffer of a loading thread: the longest read (a record's padded length, or a
    /// slab's aligned range). Records that decode read into it; raw records and slabs are read
    /// straight into their pool block, so for them it serves only the disk probe.
    static func stagingSize(_ catalog: ExpertCatalog) throws -> Int {
        guard let size = alignUp(catalog.largestRead, to: DirectReader.alignment) else {
            throw ExpertStoreError.cannotReserve(bytes: catalog.largestRead)
        }
        return max(DirectReader.alignment, size)
    }

    /// The decode buffer: as long as the longest decoded expert when records may be compressed
    /// (slab sources and raw records decode nothing, so one byte).
    static func scratchSize(_ catalog: ExpertCatalog) -> Int {
        catalog.decodes ? max(1, entries(catalog).map(\.decodedLength).max() ?? 1) : 1
    }

    func load(_ key: ExpertKey, _ entry: ExpertCatalog.Entry, into destination: UnsafeMutableRawPointer, buffers: IOBuffers, cost: inout LoadCost) throws -> ExpertWeights {
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
            try ExpertStoreError.naming(layer: key.layer, expert: key.expert) { try readQueue.read(readers[0], offset: record.offset, length: readLength, into: target) }
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
            // All three slabs (gate, up, down: far apart in a GGUF) in one queue of aligned
            // pieces, each straight into its window of the pool block (ExpertCatalog.Entry):
            // the tensors land where the block's layout has them, nothing is copied.
            let t0 = clock()
            let windows = entry.windows
            guard let last = windows.last, last.at + last.length <= ExpertPool.rounded(entry.decodedLength) else {
                throw ExpertStoreError.readFailed(path: catalog.files[slabs.first?.file ?? 0], offset: slabs.first?.offset ?? 0,
                                                  length: slabs.reduce(0) { $0 + $1.length }, reason: "expert larger than its pool block")
            }
            let requests = zip(slabs, windows).map { slab, w in
                ReadQueue.Request(reader: readers[slab.file], offset: w.start, length: w.length, buffer: destination + w.at)
            }
            try ExpertStoreError.naming(layer: key.layer, expert: key.expert) { try readQueue.read(requests) }
            cost.bytes += windows.reduce(0) { $0 + $1.length }  // what was read (the windows' room between is not)
            cost.read += clock() - t0
        }
        let views = zip(ExpertTensor.allCases, entry.tensors).map { kind, t in
            TensorView(name: kind.weightName(layer: key.layer, expert: key.expert).ggufName, type: t.type, shape: t.shape,
                       data: UnsafeRawBufferPointer(start: destination + t.offset, count: t.length), owner: self)
        }
        return ExpertWeights(gate: views[0], up: views[1], down: views[2])
    }
}
