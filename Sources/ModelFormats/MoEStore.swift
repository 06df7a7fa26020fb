import Foundation
import Quantization

/// The `.moe` store: one file holding a model's configuration, tokenizer, dense tensors and
/// every expert as its own record, each at its own type, aligned for direct I/O, optionally
/// LZ4-compressed, with a checksum. The byte-level specification is docs/store-format.md.
///
/// ### Layout
///
///     0        header (4096 bytes): magic, version, manifest location and checksum
///     4096     dense tensors, each 64-byte aligned
///     ...      expert records, each 4096-byte aligned and padded (``ExpertRecordLayout``)
///     ...      tokenizer blob (an embedded metadata-only GGUF)
///     ...      manifest (JSON)
///
/// The header is written last, so a file whose writer was interrupted has no valid magic.
public final class MoEStoreFile: Sendable {
    public static let magic: [UInt8] = Array("MOESTORE".utf8)
    /// The version a store without miss copies is written at (readers of version 1 read it).
    public static let version: UInt32 = 1
    /// The version of a store with miss copies: readers that predate them refuse it by its
    /// version instead of silently ignoring the copies. This build reads both.
    public static let missCopyVersion: UInt32 = 2
    public static let readableVersions: ClosedRange<UInt32> = 1...2
    public static let headerSize = 4096
    /// Dense tensors, the tokenizer, sections and the manifest start at multiples of this.
    /// (Expert records: ``ExpertRecordLayout/recordAlignment``.)
    public static let denseAlignment = 64

    /// Header fields (little-endian), bytes 0..<64 of the file:
    ///
    ///     0  magic "MOESTORE"      8   u32 version     12  u32 header size (4096)
    ///     16 u64 manifest offset   24  u64 manifest length
    ///     32 u64 manifest XXH64    40  u64 file size
    ///     48 u64 reserved (0)      56  u64 XXH64 of bytes 0..<56
    public struct Header: Equatable, Sendable {
        public var manifestOffset: Int
        public var manifestLength: Int
        public var manifestChecksum: UInt64
        public var fileSize: Int
        /// 1, or ``MoEStoreFile/missCopyVersion`` when the store has miss copies.
        public var version: UInt32

        public init(manifestOffset: Int, manifestLength: Int, manifestChecksum: UInt64, fileSize: Int, version: UInt32 = MoEStoreFile.version) {
            self.version = version
            self.manifestOffset = manifestOffset
            self.manifestLength = manifestLength
            self.manifestChecksum = manifestChecksum
            self.fileSize = fileSize
        }

        public func encode() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: MoEStoreFile.headerSize)
            out.replaceSubrange(0..<8, with: MoEStoreFile.magic)
            func put<T: FixedWidthInteger>(_ v: T, at o: Int) {
                withUnsafeBytes(of: v.littleEndian) { out.replaceSubrange(o..<(o + MemoryLayout<T>.size), with: $0) }
            }
            put(version, at: 8)
            put(UInt32(MoEStoreFile.headerSize), at: 12)
            put(UInt64(manifestOffset), at: 16)
            put(UInt64(manifestLength), at: 24)
            put(manifestChecksum, at: 32)
            put(UInt64(fileSize), at: 40)
            put(XXH64.hash(Array(out[0..<56])), at: 56)
            return out
        }
    }

    /// One tensor inside a dense region or an expert record.
    public struct TensorEntry: Codable, Sendable, Equatable {
        public var name: String
        public var type: String
        /// ggml order.
        public var shape: [Int]
        /// Offset from the start of the file (dense) or of the decoded record (expert).
        public var offset: Int
        public var length: Int
        /// XXH64 of the tensor bytes (dense tensors only).
        public var checksum: UInt64?

        public init(name: String, type: String, shape: [Int], offset: Int, length: Int, checksum: UInt64?) {
            self.name = name
            self.type = type
            self.shape = shape
            self.offset = offset
            self.length = length
            self.checksum = checksum
        }
    }

    /// How an expert record's stored bytes become the decoded bytes.
    public enum Compression: String, Codable, Sendable {
        /// Stored as-is.
        case none
        /// LZ4 block of the decoded bytes.
        case lz4
        /// Bytes split into planes by position within each 2-byte element ("shuffle"), then LZ4.
        case lz4Shuffle2 = "lz4-shuffle2"
        /// The same for 4-byte elements.
        case lz4Shuffle4 = "lz4-shuffle4"
    }

    /// One expert (gate, up and down weights of one expert of one layer).
    public struct ExpertRecord: Codable, Sendable, Equatable {
        public var layer: Int
        public var expert: Int
        public var offset: Int
        /// Bytes stored in the file (before padding to ``ExpertRecordLayout/recordAlignment``).
        public var storedLength: Int
        /// Bytes after decoding.
        public var decodedLength: Int
        public var compression: Compression
        /// XXH64 of the stored bytes.
        public var checksum: UInt64
        /// gate, up, down: offsets relative to the decoded record, as ``ExpertRecordLayout`` puts them.
        public var tensors: [TensorEntry]
        /// The expert's small copy for `--on-miss lowbit` (version 2 stores written with
        /// `moe convert --miss-copy TYPE`).
        public var missCopy: MissCopyRecord?

        public init(layer: Int, expert: Int, offset: Int, storedLength: Int, decodedLength: Int, compression: Compression, checksum: UInt64,
                    tensors: [TensorEntry], missCopy: MissCopyRecord? = nil) {
            self.layer = layer
            self.expert = expert
            self.offset = offset
            self.storedLength = storedLength
            self.decodedLength = decodedLength
            self.compression = compression
            self.checksum = checksum
            self.tensors = tensors
            self.missCopy = missCopy
        }

        /// Bytes read from disk for this record: ``storedLength`` padded to the record alignment
        /// (nil if the manifest's length is negative or absurd; the reader refuses such stores).
        public var paddedLength: Int? { ExpertRecordLayout.paddedLength(storedLength: storedLength) }
    }

    /// A low-bit copy of an expert, read instead of the expert on a miss with `--on-miss lowbit`:
    /// an uncompressed record laid out like any other (``ExpertRecordLayout``), 4096-aligned and
    /// padded, its checksum over the `length` record bytes.
    public struct MissCopyRecord: Codable, Sendable, Equatable {
        public var offset: Int
        public var length: Int
        public var checksum: UInt64
        public var tensors: [TensorEntry]

        public init(offset: Int, length: Int, checksum: UInt64, tensors: [TensorEntry]) {
            self.offset = offset
            self.length = length
            self.checksum = checksum
            self.tensors = tensors
        }

        /// The record as an uncompressed expert record, for the shared layout checks.
        func asRecord(layer: Int, expert: Int) -> ExpertRecord {
            ExpertRecord(layer: layer, expert: expert, offset: offset, storedLength: length, decodedLength: length, compression: .none,
                         checksum: checksum, tensors: tensors)
        }
    }

    public struct Blob: Codable, Sendable, Equatable {
        public var offset: Int
        public var length: Int
        public var checksum: UInt64

        public init(offset: Int, length: Int, checksum: UInt64) {
            self.offset = offset
            self.length = length
            self.checksum = checksum
        }
    }

    public struct Manifest: Codable, Sendable {
        public var format: String
        public var version: Int
        public var configuration: ModelConfiguration
        public var source: String
        public var createdBy: String
        /// A metadata-only GGUF holding the source's `tokenizer.*` keys (and, for Hugging Face
        /// sources, `tokenizer.huggingface.json`), or nil.
        public var tokenizer: Blob?
        public var dense: [TensorEntry]
        public var experts: [ExpertRecord]
        /// Free-form extra sections (e.g. predictor tables), name → blob.
        public var sections: [String: Blob]?
        /// The type every expert's miss copy was asked at (`q2_K`), when the store has them
        /// (version 2); a tensor whose rows its blocks do not divide falls back as `--bits` does.
        public var missCopyType: String?

        public init(format: String, version: Int, configuration: ModelConfiguration, source: String, createdBy: String,
                    tokenizer: Blob?, dense: [TensorEntry], experts: [ExpertRecord], sections: [String: Blob]?, missCopyType: String? = nil) {
            self.missCopyType = missCopyType
            self.format = format
            self.version = version
            self.configuration = configuration
            self.source = source
            self.createdBy = createdBy
            self.tokenizer = tokenizer
            self.dense = dense
            self.experts = experts
            self.sections = sections
        }
    }

    public let path: String
    public let file: MappedFile
    /// The header's format version (1, or 2 with miss copies).
    public let version: UInt32
    public let header: Header
    public let manifest: Manifest
    private let denseIndex: [String: Int]
    private let expertIndex: [Int: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let path = file.path
        var reader = ByteReader(file.bytes, path: path)
        let magic = try reader.readBytes(8, "the store magic")
        guard Array(magic) == MoEStoreFile.magic else {
            throw ModelFormatError.badMagic(path: path, found: String(decoding: magic.map { $0 >= 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: ".") }, as: UTF8.self), expected: "MOESTORE")
        }
        let version = try reader.read(UInt32.self, "the store version")
        guard MoEStoreFile.readableVersions.contains(version) else {
            throw ModelFormatError.notAModel(path: path, reason: "store format version \(version); this build reads versions \(MoEStoreFile.readableVersions.lowerBound)–\(MoEStoreFile.readableVersions.upperBound) (re-run moe convert, or use a newer SwiftMoE)")
        }
        self.version = version
        let headerSize = try reader.read(UInt32.self, "the header size")
        let manifestOffset = try reader.read(UInt64.self, "the manifest offset")
        let manifestLength = try reader.read(UInt64.self, "the manifest length")
        let manifestChecksum = try reader.read(UInt64.self, "the manifest checksum")
        let fileSize = try reader.read(UInt64.self, "the file size")
        _ = try reader.read(UInt64.self, "reserved header bytes")
        let headerChecksum = try reader.read(UInt64.self, "the header checksum")
        let computed = XXH64.hash(UnsafeRawBufferPointer(rebasing: file.bytes[0..<56]))
        guard headerChecksum == computed else {
            throw ModelFormatError.implausible(path: path, what: "store header checksum", value: String(headerChecksum, radix: 16), offset: 56)
        }
        guard headerSize == UInt32(MoEStoreFile.headerSize) else {
            throw ModelFormatError.implausible(path: path, what: "store header size", value: "\(headerSize)", offset: 12)
        }
        guard fileSize == UInt64(file.size) else {
            throw ModelFormatError.truncated(path: path, offset: file.size, needed: Int(clamping: fileSize) - file.size, what: "the store (header says \(fileSize) bytes, file has \(file.size))")
        }
        guard manifestOffset >= UInt64(MoEStoreFile.headerSize), manifestLength <= UInt64(file.size),
              manifestOffset <= UInt64(file.size) - manifestLength else {
            throw ModelFormatError.implausible(path: path, what: "manifest location", value: "\(manifestOffset)+\(manifestLength)", offset: 16)
        }
        header = Header(manifestOffset: Int(manifestOffset), manifestLength: Int(manifestLength), manifestChecksum: manifestChecksum, fileSize: Int(fileSize), version: version)
        let manifestBytes = UnsafeRawBufferPointer(rebasing: file.bytes[Int(manifestOffset)..<Int(manifestOffset + manifestLength)])
        guard XXH64.hash(manifestBytes) == manifestChecksum else {
            throw ModelFormatError.invalidMetadata(path: path, key: "manifest", reason: "checksum mismatch at offset \(manifestOffset); the file is damaged, re-run moe convert")
        }
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(manifestBytes))
        } catch {
            throw ModelFormatError.invalidMetadata(path: path, key: "manifest", reason: "not a valid store manifest: \(ModelFormatError.shown(decoding: error))")
        }
        try manifest.configuration.validate(source: path)
        denseIndex = Dictionary(manifest.dense.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        var experts: [Int: Int] = [:]
        for (i, record) in manifest.experts.enumerated() {
            experts[record.layer << 20 | record.expert] = i
        }
        expertIndex = experts
        try validate()
    }

    /// Checks every offset, length, type and shape against the file and the configuration.
    private func validate() throws {
        let c = manifest.configuration
        func checkRange(_ offset: Int, _ length: Int, _ what: String) throws {
            guard offset >= MoEStoreFile.headerSize, length >= 0, offset <= file.size, length <= file.size - offset else {
                throw ModelFormatError.tensorOutOfBounds(path: path, tensor: what, end: offset &+ length, fileSize: file.size)
            }
        }
        func checkTensor(_ t: TensorEntry, within limit: Int?) throws {
            guard let type = GGMLType(name: t.type) else {
                throw ModelFormatError.invalidTensor(path: path, tensor: t.name, reason: "unknown type \(t.type)")
            }
            guard t.shape.count >= 1, t.shape.count <= 4, t.shape.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }),
                  let bytes = type.traits.byteCount(elements: t.shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 })),
                  bytes == t.length, t.shape[0] % type.traits.blockSize == 0 else {
                throw ModelFormatError.invalidTensor(path: path, tensor: t.name, reason: "shape \(t.shape) of \(t.type) does not match its \(t.length) bytes")
            }
            if let limit {
                guard t.offset >= 0, t.offset <= limit, t.length <= limit - t.offset else {
                    throw ModelFormatError.invalidTensor(path: path, tensor: t.name, reason: "lies outside its record")
                }
            } else {
                try checkRange(t.offset, t.length, t.name)
            }
        }
        for t in manifest.dense { try checkTensor(t, within: nil) }
        var seen = Set<Int>()
        for r in manifest.experts {
            let name = "expert \(r.expert) of layer \(r.layer)"
            guard r.layer >= 0, r.layer < c.layerCount, c.layerKinds[r.layer] == .moe, r.expert >= 0, r.expert < c.expertCount else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "no such expert in the configuration")
            }
            guard seen.insert(r.layer << 20 | r.expert).inserted else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "has more than one record")
            }
            guard r.offset % ExpertRecordLayout.recordAlignment == 0 else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "record offset \(r.offset) is not aligned to \(ExpertRecordLayout.recordAlignment)")
            }
            guard let padded = r.paddedLength else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "implausible stored length \(r.storedLength)")
            }
            try checkRange(r.offset, padded, name)
            guard r.decodedLength >= 0, r.decodedLength <= 1 << 36, r.tensors.count == ExpertTensor.allCases.count else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "record has \(r.tensors.count) tensors and \(r.decodedLength) decoded bytes")
            }
            if r.compression == .none, r.storedLength != r.decodedLength {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "uncompressed record stores \(r.storedLength) bytes but decodes to \(r.decodedLength)")
            }
            for t in r.tensors { try checkTensor(t, within: r.decodedLength) }
            guard ExpertRecordLayout(record: r) != nil else {
                let found = r.tensors.map { "\($0.name) at \($0.offset)" }.joined(separator: ", ")
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "tensors (\(found), \(r.decodedLength) bytes) are not gate, up and down laid out as docs/store-format.md says")
            }
            for (t, kind) in zip(r.tensors, ExpertTensor.allCases) where t.shape != kind.shape(c) {
                throw ModelFormatError.shapeMismatch(tensor: "\(name) \(t.name)", expected: kind.shape(c), found: t.shape)
            }
            if let copy = r.missCopy { try validate(missCopy: copy, of: r, name: name, checkRange: checkRange, checkTensor: checkTensor) }
        }
        let copies = manifest.experts.filter { $0.missCopy != nil }.count
        guard copies == 0 || (version >= MoEStoreFile.missCopyVersion && copies == manifest.experts.count && manifest.missCopyType != nil) else {
            throw ModelFormatError.invalidMetadata(path: path, key: "missCopy", reason: version < MoEStoreFile.missCopyVersion
                ? "miss copies in a version \(version) store (they need version \(MoEStoreFile.missCopyVersion))"
                : "\(copies) of \(manifest.experts.count) experts have a miss copy (all or none must, with missCopyType)")
        }
        for l in 0..<c.layerCount where c.layerKinds[l] == .moe {
            for e in 0..<c.expertCount where expertIndex[l << 20 | e] == nil {
                throw ModelFormatError.missingTensor("expert \(e) of layer \(l)", model: path)
            }
        }
        if let t = manifest.tokenizer { try checkRange(t.offset, t.length, "tokenizer") }
    }

    /// A miss copy is checked as an uncompressed expert record with the expert's shapes.
    private func validate(missCopy copy: MissCopyRecord, of r: ExpertRecord, name: String, checkRange: (Int, Int, String) throws -> Void,
                          checkTensor: (TensorEntry, Int?) throws -> Void) throws {
        let what = "miss copy of \(name)"
        let record = copy.asRecord(layer: r.layer, expert: r.expert)
        guard copy.offset % ExpertRecordLayout.recordAlignment == 0, let padded = record.paddedLength, copy.length <= 1 << 36,
              copy.tensors.count == ExpertTensor.allCases.count else {
            throw ModelFormatError.invalidTensor(path: path, tensor: what, reason: "offset \(copy.offset) or length \(copy.length) is not a record's")
        }
        try checkRange(copy.offset, padded, what)
        for t in copy.tensors { try checkTensor(t, copy.length) }
        guard ExpertRecordLayout(record: record) != nil else {
            throw ModelFormatError.invalidTensor(path: path, tensor: what, reason: "tensors are not gate, up and down laid out as docs/store-format.md says")
        }
        for (t, e) in zip(copy.tensors, r.tensors) where t.shape != e.shape {
            throw ModelFormatError.shapeMismatch(tensor: "\(what) \(t.name)", expected: e.shape, found: t.shape)
        }
    }

    /// A view of a dense tensor (checked against its checksum on first use by ``verifyDense(_:)``).
    public func dense(_ name: String) -> TensorView? {
        guard let i = denseIndex[name] else { return nil }
        let t = manifest.dense[i]
        guard let type = GGMLType(name: t.type) else { return nil }
        return TensorView(name: t.name, type: type, shape: t.shape,
                          data: UnsafeRawBufferPointer(rebasing: file.bytes[t.offset..<(t.offset + t.length)]), owner: file)
    }

    /// Verifies every dense tensor's checksum; throws naming the first damaged one.
    public func verifyDense() throws {
        for t in manifest.dense {
            guard let expected = t.checksum else { continue }
            let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[t.offset..<(t.offset + t.length)])
            guard XXH64.hash(bytes) == expected else {
                throw ModelFormatError.invalidTensor(path: path, tensor: t.name, reason: "checksum mismatch (bytes \(t.offset)..<\(t.offset + t.length)); the file is damaged, re-run moe convert")
            }
        }
    }

    public func record(layer: Int, expert: Int) -> ExpertRecord? {
        expertIndex[layer << 20 | expert].map { manifest.experts[$0] }
    }

    /// The embedded tokenizer metadata as a GGUF file, if the store has one.
    public func tokenizerGGUF() throws -> GGUFFile? {
        guard let blob = manifest.tokenizer else { return nil }
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[blob.offset..<(blob.offset + blob.length)])
        guard XXH64.hash(bytes) == blob.checksum else {
            throw ModelFormatError.invalidMetadata(path: path, key: "tokenizer", reason: "checksum mismatch at offset \(blob.offset); the file is damaged")
        }
        return try GGUFFile(file: MappedFile(slice: blob.offset..<(blob.offset + blob.length), of: file, name: "\(path) (tokenizer)"))
    }

    /// Bytes of one section, checksum-verified.
    public func section(_ name: String) throws -> Data? {
        guard let blob = manifest.sections?[name] else { return nil }
        guard blob.offset >= 0, blob.length >= 0, blob.offset <= file.size, blob.length <= file.size - blob.offset else {
            throw ModelFormatError.tensorOutOfBounds(path: path, tensor: "section \(name)", end: blob.offset &+ blob.length, fileSize: file.size)
        }
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[blob.offset..<(blob.offset + blob.length)])
        guard XXH64.hash(bytes) == blob.checksum else {
            throw ModelFormatError.invalidMetadata(path: path, key: "section \(name)", reason: "checksum mismatch at offset \(blob.offset)")
        }
        return Data(bytes)
    }
}
