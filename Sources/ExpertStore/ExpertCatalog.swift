import Foundation
import ModelFormats
import Quantization

/// Where each expert's bytes are on disk and how they decode, for any model source.
///
/// - `.moe` stores: one aligned record per expert, maybe LZ4-compressed, with a checksum.
/// - GGUF: three slabs (gate, up, down), one in each stacked `ffn_*_exps` tensor.
/// - Hugging Face: three tensors per expert, possibly in different shards.
public struct ExpertCatalog: Sendable {
    /// A contiguous byte range of one file that becomes one tensor of the decoded expert.
    public struct Slab: Sendable {
        public var file: Int
        public var offset: Int
        public var length: Int
    }

    public enum Location: Sendable {
        /// A `.moe` record; `readLength` is its stored bytes padded to the record alignment
        /// (``ExpertRecordLayout/paddedLength(storedLength:)``), what one direct read fetches.
        case record(MoEStoreFile.ExpertRecord, readLength: Int)
        case slabs([Slab])
    }

    public struct Entry: Sendable {
        public var location: Location
        /// The expert's tensors as a `.moe` record lays them out (types, shapes, record offsets).
        public var layout: ExpertRecordLayout
        /// gate, up, down: type, ggml shape, offset and length within the expert's pool block.
        /// A `.moe` record decodes to its record layout. A slab source's tensor sits in its own
        /// window of the block, at its file offset modulo 4096 (``windows``), so one direct read
        /// of the slab's aligned file range lands it in place, with no staging copy.
        public let tensors: [ExpertRecordLayout.Tensor]
        /// Bytes of the pool block the expert needs (before the pool rounds it up).
        public let decodedLength: Int
        /// A slab source's reads, one per slab (empty for a `.moe` record): its aligned file range
        /// (`start`, `length`) and where that range goes in the pool block (`at`).
        public let windows: [(start: Int, length: Int, at: Int)]

        init(location: Location, layout: ExpertRecordLayout) throws {
            self.location = location
            self.layout = layout
            switch location {
            case .record:
                tensors = layout.tensors
                decodedLength = layout.decodedLength
                windows = []
            case let .slabs(slabs):
                (windows, decodedLength) = try ExpertCatalog.slabWindows(slabs)
                tensors = zip(layout.tensors, zip(slabs, windows)).map { t, sw in
                    ExpertRecordLayout.Tensor(type: t.type, shape: t.shape, offset: sw.1.at + (sw.0.offset - sw.1.start), length: t.length)
                }
            }
        }
    }

    /// Each slab's aligned file range (`start`, `length`: whole 4096-byte blocks around it) and
    /// where that range lies in the expert's pool block (`at`), and the block's length. Every
    /// slab gets a window of its length rounded up to 4096 plus one more 4096 — room for the
    /// range whatever the slab's offset — so experts whose tensors have the same lengths take
    /// blocks of the same size (a pool of equal blocks does not fragment). The bytes around a
    /// slab in its window belong to other experts and are never used.
    static func slabWindows(_ slabs: [Slab]) throws -> (windows: [(start: Int, length: Int, at: Int)], blockLength: Int) {
        let a = DirectReader.alignment
        var at = 0
        let windows = try slabs.map { slab in
            let start = slab.offset / a * a
            // The slab lies inside a mapped file, so this cannot overflow; checked all the same.
            guard let end = alignUp(slab.offset + slab.length, to: a), let room = alignUp(slab.length, to: a).map({ $0 + a }),
                  at <= Int.max - room else {
                throw ExpertStoreError.readFailed(path: "slab", offset: slab.offset, length: slab.length, reason: "range too large")
            }
            defer { at += room }
            return (start, end - start, at)
        }
        return (windows, at)
    }

    public let files: [String]
    public let layerCount: Int
    public let expertCount: Int
    private let entries: [[Entry]]
    /// Whether records carry checksums (only `.moe` stores do).
    public let verified: Bool

    public func entry(_ key: ExpertKey) -> Entry? {
        guard key.layer >= 0, key.layer < entries.count, key.expert >= 0, key.expert < entries[key.layer].count else { return nil }
        return entries[key.layer][key.expert]
    }

    /// The largest number of bytes any `k` experts of one layer need together (the minimum pool).
    public func largestActiveSet(k: Int) -> Int {
        entries.map { layer in layer.map { ExpertPool.rounded($0.decodedLength) }.sorted(by: >).prefix(k).reduce(0, +) }.max() ?? 0
    }

    /// The smallest pool that always works: one layer's largest `k` experts plus the largest
    /// single expert of slack, because experts of different sizes (per-expert bit-widths, or
    /// Q4_K_M's mixed down projections) can fragment an arena that holds exactly `k`.
    public func minimumPool(k: Int) -> Int {
        let largest = entries.joined().map { ExpertPool.rounded($0.decodedLength) }.max() ?? 0
        let uniform = Set(entries.joined().map { ExpertPool.rounded($0.decodedLength) }).count <= 1
        return largestActiveSet(k: k) + (uniform ? 0 : largest)
    }

    public var totalBytes: Int { entries.joined().reduce(0) { $0 + ExpertPool.rounded($1.decodedLength) } }

    /// Whether any expert is stored compressed (its loading needs a decode buffer).
    public var decodes: Bool {
        entries.joined().contains { entry in
            if case let .record(record, _) = entry.location { return record.compression != .none }
            return false
        }
    }

    /// The largest single read, for sizing staging buffers.
    public var largestRead: Int {
        entries.joined().map { entry -> Int in
            switch entry.location {
            case let .record(_, readLength): return readLength
            case let .slabs(slabs): return slabs.map { $0.length + 2 * DirectReader.alignment }.max() ?? 0
            }
        }.max() ?? 0
    }

    /// Builds the catalog of `source`'s experts without reading any expert bytes.
    public init(source: ModelSource) throws {
        let c = source.configuration
        layerCount = c.layerCount
        expertCount = c.expertCount
        switch source.container {
        case let .store(store):
            files = [store.path]
            verified = true
            entries = try (0..<c.layerCount).map { l in
                guard c.layerKinds[l] == .moe else { return [] }
                return try (0..<c.expertCount).map { e in
                    guard let r = store.record(layer: l, expert: e) else { throw ModelFormatError.missingTensor("expert \(e) of layer \(l)", model: store.path) }
                    guard let layout = ExpertRecordLayout(record: r), let readLength = r.paddedLength else {
                        throw ModelFormatError.invalidTensor(path: store.path, tensor: "expert \(e) of layer \(l)", reason: "record is not laid out as docs/store-format.md says")
                    }
                    return try Entry(location: .record(r, readLength: readLength), layout: layout)
                }
            }
        case .gguf, .huggingFace:
            var fileIndex: [String: Int] = [:]
            var paths: [String] = []
            entries = try (0..<c.layerCount).map { l in
                guard c.layerKinds[l] == .moe else { return [] }
                return try (0..<c.expertCount).map { e in
                    let views = try source.expertTensors(layer: l, expert: e)
                    guard let layout = ExpertRecordLayout(views.map { ($0.type, $0.shape) }),
                          zip(layout.tensors, views).allSatisfy({ $0.length == $1.data.count }) else {
                        throw ModelFormatError.invalidTensor(path: source.path, tensor: "expert \(e) of layer \(l)", reason: "tensor lengths do not match their types and shapes")
                    }
                    let slabs = try views.map { view in
                        let (path, offset) = try source.fileLocation(of: view)
                        let index = fileIndex[path] ?? {
                            paths.append(path)
                            fileIndex[path] = paths.count - 1
                            return paths.count - 1
                        }()
                        return Slab(file: index, offset: offset, length: view.data.count)
                    }
                    return try Entry(location: .slabs(slabs), layout: layout)
                }
            }
            files = paths
            verified = false
        }
    }
}

/// Positioned reads that bypass the page cache: O_DIRECT where the file system allows it,
/// otherwise ordinary reads followed by `posix_fadvise(DONTNEED)` so the kernel drops the
/// pages again. Either way a run under `--memory` does not quietly grow the page cache.
///
/// The file's size is taken when it opens: a read that meets the end of the file before that
/// size is an error (the file was truncated while in use), never zeros handed out as weights.
public final class DirectReader: Sendable {
    public static let alignment = 4096
    public let path: String
    public let direct: Bool
    /// The file's size when it was opened (reads past it come back as zeros: alignment slack).
    public let sizeAtOpen: Int
    private let fd: Int32
    /// The fault-injection seam's read for this file (nil: `pread`, always outside tests).
    private let seam: ReadSeam?

    public init(path: String) throws {
        self.path = path
        #if os(Linux)
        var fd = open(path, O_RDONLY | DirectReader.oDirect)
        var direct = fd >= 0
        if fd < 0 {
            fd = open(path, O_RDONLY)
            direct = false
        }
        #else
        let fd = open(path, O_RDONLY)
        let direct = false
        #endif
        guard fd >= 0 else { throw ModelFormatError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ModelFormatError.cannotOpen(path: path, reason: reason)
        }
        self.fd = fd
        self.direct = direct
        sizeAtOpen = Int(info.st_size)
        seam = DirectReader.injectedSeam(for: path)
    }

    deinit { close(fd) }

    #if os(Linux)
    /// Linux's O_DIRECT, which Glibc does not export to Swift (it needs _GNU_SOURCE).
    #if arch(x86_64) || arch(i386)
    static let oDirect: Int32 = 0o40000
    #else
    static let oDirect: Int32 = 0o200000  // arm64, riscv64 and most others
    #endif
    #endif

    /// Reads `length` bytes at `offset` into `buffer`. With O_DIRECT, `offset`, `length` and
    /// `buffer` must be multiples of ``alignment`` (callers widen their ranges).
    public func read(offset: Int, length: Int, into buffer: UnsafeMutableRawPointer) throws {
        var done = 0
        while done < length {
            let n: Int
            if let seam {
                n = seam(fd, buffer + done, length - done, offset + done)
            } else {
                n = pread(fd, buffer + done, length - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ExpertStoreError.readFailed(path: path, offset: offset + done, length: length - done, reason: String(cString: strerror(errno)))
            }
            if n == 0 {
                guard offset + done >= sizeAtOpen else {
                    throw ExpertStoreError.readFailed(path: path, offset: offset + done, length: length - done,
                                                      reason: "the file ends there but was \(sizeAtOpen) bytes when opened (truncated while in use?)")
                }
                // Past the end the file had when opened: the alignment slack of the last block; zeros.
                (buffer + done).initializeMemory(as: UInt8.self, repeating: 0, count: length - done)
                break
            }
            done += n
        }
        #if os(Linux)
        if !direct { posix_fadvise(fd, off_t(offset), off_t(length), Int32(POSIX_FADV_DONTNEED)) }
        #endif
    }
}
