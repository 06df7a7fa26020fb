import Foundation
import ModelFormats
import Quantization

/// What a decode step does when an expert it needs is not in the pool (`--on-miss`).
public enum MissPolicy: String, CaseIterable, Sendable, Codable {
    /// Read the expert and wait for it: exact, the default.
    case exact
    /// Compute it from its low-bit copy (`moe convert --miss-copy TYPE`), read in a fraction of
    /// the time, while the exact expert loads for later tokens. Lossy.
    case lowbit
}

/// The low-bit copies of a version 2 store's experts (`moe convert --miss-copy TYPE`,
/// docs/store-format.md, *Miss copies*), read with direct I/O into one of `slots` buffers when
/// ``LowBitOnMiss`` serves a miss from them. Each read verifies the copy's checksum.
///
/// `@unchecked Sendable`: the buffers are written only by ``read(_:slot:)``, and every caller
/// holds ``lock`` from the read until it is done with the weights (``LowBitOnMiss`` holds it for
/// a whole decode step of one layer); the rest is immutable.
public final class MissCopies: @unchecked Sendable {
    /// The type the copies were asked at (`q2_K`; rows its blocks do not divide fell back).
    public let type: String
    public let path: String
    /// Bytes of one buffer: the largest copy, padded for a direct read.
    public let slotSize: Int
    public let slotCount: Int
    /// Bytes of every copy together.
    public let totalBytes: Int
    let lock = NSLock()
    private let copies: [ExpertKey: (record: MoEStoreFile.MissCopyRecord, layout: ExpertRecordLayout)]
    private let reader: DirectReader
    private let slots: UnsafeMutableRawPointer

    /// Nil when the store has no miss copies.
    public init?(store: MoEStoreFile, slots: Int) throws {
        guard let type = store.manifest.missCopyType else { return nil }
        var copies: [ExpertKey: (MoEStoreFile.MissCopyRecord, ExpertRecordLayout)] = [:]
        for r in store.manifest.experts {
            // The reader validated every copy (MoEStoreFile); a layout that still fails is refused here.
            guard let copy = r.missCopy, let layout = ExpertRecordLayout(record: MoEStoreFile.ExpertRecord(
                layer: r.layer, expert: r.expert, offset: copy.offset, storedLength: copy.length, decodedLength: copy.length,
                compression: .none, checksum: copy.checksum, tensors: copy.tensors)) else {
                throw ModelFormatError.invalidTensor(path: store.path, tensor: "miss copy of expert \(r.expert) of layer \(r.layer)", reason: "missing or not laid out as a record")
            }
            copies[ExpertKey(layer: r.layer, expert: r.expert)] = (copy, layout)
        }
        self.type = type
        path = store.path
        self.copies = copies
        slotSize = MissCopies.slotSize(store)
        slotCount = max(1, slots)
        totalBytes = copies.values.reduce(0) { $0 + $1.0.length }
        reader = try DirectReader(path: store.path)
        self.slots = .allocate(byteCount: slotSize * slotCount, alignment: DirectReader.alignment)
    }

    deinit { slots.deallocate() }

    /// Bytes of one slot for `store`'s copies (0 without copies): what ``MemoryPlan`` reserves per slot.
    public static func slotSize(_ store: MoEStoreFile) -> Int {
        store.manifest.experts.compactMap { $0.missCopy.flatMap { ExpertRecordLayout.paddedLength(storedLength: $0.length) } }.max() ?? 0
    }

    /// Reads the copy of `key` into buffer `slot` and returns its weights, valid until that slot
    /// is read into again; with the bytes read and the seconds it took. Hold ``lock``.
    func read(_ key: ExpertKey, slot: Int) throws -> (weights: ExpertWeights, bytes: Int, seconds: Double) {
        guard let (record, layout) = copies[key] else { throw ExpertStoreError.noSuchExpert(layer: key.layer, expert: key.expert) }
        guard slot >= 0, slot < slotCount, let padded = ExpertRecordLayout.paddedLength(storedLength: record.length), padded <= slotSize else {
            throw ExpertStoreError.corruptRecord(path: path, layer: key.layer, expert: key.expert, offset: record.offset, reason: "miss copy does not fit its buffer")
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let base = slots + slot * slotSize
        try reader.read(offset: record.offset, length: padded, into: base)
        let found = XXH64.hash(UnsafeRawBufferPointer(start: base, count: record.length))
        guard found == record.checksum else {
            throw ExpertStoreError.checksumMismatch(path: path, layer: key.layer, expert: key.expert, offset: record.offset, expected: record.checksum, found: found)
        }
        let views = zip(ExpertTensor.allCases, layout.tensors).map { kind, t in
            TensorView(name: kind.weightName(layer: key.layer, expert: key.expert).ggufName, type: t.type, shape: t.shape,
                       data: UnsafeRawBufferPointer(start: base + t.offset, count: t.length), owner: self)
        }
        return (ExpertWeights(gate: views[0], up: views[1], down: views[2]), padded, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
    }
}

/// `--on-miss lowbit` (HOBBIT's idea, Tang et al. 2024): a paged store whose decode misses are
/// computed from the expert's low-bit copy, read in a fraction of the time, while the exact
/// expert loads on a loader thread for later tokens. Prefill and everything else get the exact
/// experts (a prompt chunk's wave reads each expert once for all its tokens, reads overlapped).
/// Lossy: docs/quality.md measures what it costs.
public final class LowBitOnMiss: ExpertProvider {
    public let store: PagedExpertStore
    public let copies: MissCopies

    public init(store: PagedExpertStore, copies: MissCopies) {
        self.store = store
        self.copies = copies
    }

    public func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R {
        try store.withExpert(layer: layer, expert: expert, body)
    }

    @discardableResult
    public func prefetch(_ keys: [ExpertKey], currentLayer: Int) -> [ExpertKey] { store.prefetch(keys, currentLayer: currentLayer) }

    public func notResident(_ keys: [ExpertKey]) -> [ExpertKey] { store.notResident(keys) }

    public func withTokenExperts<R>(layer: Int, experts: [Int], _ body: ([ExpertWeights]) throws -> R) throws -> R {
        copies.lock.lock()
        defer { copies.lock.unlock() }
        var pinned: [ExpertKey] = []
        defer { for key in pinned { store.release(key) } }
        var weights: [ExpertWeights] = []
        var slot = 0
        for e in experts {
            let key = ExpertKey(layer: layer, expert: e)
            if let exact = try store.acquireIfResident(key) {
                pinned.append(key)
                weights.append(exact)
            } else {
                let copy = try copies.read(key, slot: slot)
                slot += 1
                store.recordLowbitRead(bytes: copy.bytes, seconds: copy.seconds)
                weights.append(copy.weights)
            }
        }
        return try body(weights)
    }
}
