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

    static func stagingSize(_ catalog: ExpertCatalog) throws -> Int {
        guard let size = alignUp(catalog.largestRead, to: DirectReader.alignment) else {
            throw ExpertStoreError.cannotReserve(bytes: catalog.largestRead)
        }
        return max(DirectReader.alignment, size)
    }

    static func scratchSize(_ catalog: ExpertCatalog) -> Int {
        max(1, (0..<catalog.layerCount).flatMap { l in (0..<catalog.expertCount).compactMap { catalog.entry(ExpertKey(layer: l, expert: $0))?.decodedLength } }.max() ?? 1)
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
                    try ExpertStoreError.naming(layer: key.layer, expert: key.expert) { try readQueue.read(readers[slab.file], offset: done, length: chunk, into: buffers.staging) }
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
