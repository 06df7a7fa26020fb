import ExpertStore
import Foundation
import ModelFormats
import Quantization

/// Writes a `.moe` store (docs/store-format.md) sequentially to `<output>.partial`, and
/// renames it over `<output>` (``AtomicFile/commit(_:to:)``) only after the header — written
/// last — is on disk. A failed write (disk full) or an interrupt (with
/// ``PartialFiles/removeOnInterrupt()``) deletes the `.partial` file; a previous `<output>`
/// stays as it was until the rename replaces it in one step.
public final class StoreWriter {
    /// When records are LZ4-compressed.
    public enum CompressionMode: String, CaseIterable, Sendable {
        /// Try LZ4 (behind a byte-plane shuffle for 16/32-bit weights) and keep it only where
        /// loading gets faster: reading the smaller record and decoding it (timed on this
        /// record) must beat reading it raw at ``StoreWriter/diskBandwidth``.
        case auto
        /// Store every record raw.
        case none
        /// Keep LZ4 wherever it saves at least 10% of the bytes, whatever the decode costs
        /// (for disk space, or storage much slower than this machine's).
        case size
    }

    /// Bytes per second the run's storage reads with O_DIRECT (what `auto` weighs decode time
    /// against). `moe convert` measures it on the input's file system unless given.
    public var diskBandwidth: Double = 1.5e9

    /// With `auto`, a compressed record must load at least this much faster than raw (10%).
    public static let requiredGain = 0.9

    public let outputPath: String
    public let partialPath: String
    /// nil when only measuring (``measuring()``): writes just advance the position.
    private let handle: AtomicFile.Writer?
    private var position = 0
    private var dense: [MoEStoreFile.TensorEntry] = []
    private var experts: [MoEStoreFile.ExpertRecord] = []
    private var tokenizer: MoEStoreFile.Blob?
    private var sections: [String: MoEStoreFile.Blob] = [:]
    private var finished = false
    public private(set) var rawExpertBytes = 0
    public private(set) var storedExpertBytes = 0
    public private(set) var compressedRecords = 0

    public init(outputPath: String) throws {
        self.outputPath = outputPath
        partialPath = outputPath + ".partial"
        handle = try AtomicFile.Writer(creating: partialPath, destination: outputPath)
        // Placeholder header: zeros, no magic, until finish().
        try write([UInt8](repeating: 0, count: MoEStoreFile.headerSize))
    }

    private init(measuringAt path: String) {
        outputPath = path
        partialPath = path + ".partial"
        handle = nil
        position = MoEStoreFile.headerSize
    }

    /// A writer that writes nothing and only counts: the same layout, with every checksum at
    /// its widest, so ``fileSize`` after ``finish(configuration:source:)`` bounds the real
    /// store's size from above. The bit planner sizes stores with it.
    public static func measuring() -> StoreWriter { StoreWriter(measuringAt: "(measuring)") }

    /// Bytes written so far (after `finish`: the whole file).
    public var fileSize: Int { position }
    public var isMeasuring: Bool { handle == nil }

    deinit {
        if !finished { abandon() }
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let handle else {
            position += bytes.count
            return
        }
        try handle.write(bytes)
        position += bytes.count
    }

    private func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    private func pad(to alignment: Int) throws {
        guard let end = alignUp(position, to: alignment) else {
            throw ModelFormatError.cannotOpen(path: partialPath, reason: "the store would exceed the largest file size")
        }
        if end > position { try write([UInt8](repeating: 0, count: end - position)) }
    }

    /// Appends a dense tensor.
    public func addDense(name: String, type: GGMLType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        try pad(to: MoEStoreFile.denseAlignment)
        dense.append(.init(name: name, type: type.description, shape: shape, offset: position, length: bytes.count,
                           checksum: isMeasuring ? UInt64.max : XXH64.hash(bytes)))
        try write(bytes)
    }

    /// Appends one expert: gate, up and down, each `(type, ggml shape, bytes)`, laid out as
    /// ``ExpertRecordLayout`` says (zeros between the tensors).
    public func addExpert(layer: Int, expert: Int, tensors: [(type: GGMLType, shape: [Int], bytes: [UInt8])], compression: CompressionMode) throws {
        let name = "expert \(expert) of layer \(layer)"
        guard let layout = ExpertRecordLayout(tensors.map { ($0.type, $0.shape) }),
              zip(layout.tensors, tensors).allSatisfy({ $0.length == $1.bytes.count }) else {
            let described = tensors.map { "\($0.type) \($0.shape): \($0.bytes.count) bytes" }.joined(separator: ", ")
            throw ModelFormatError.invalidTensor(path: partialPath, tensor: name, reason: "\(described) do not form an expert record")
        }
        var decoded = [UInt8](repeating: 0, count: layout.decodedLength)
        for (t, source) in zip(layout.tensors, tensors) {
            decoded.replaceSubrange(t.offset..<(t.offset + t.length), with: source.bytes)
        }
        var stored = decoded
        var method0 = MoEStoreFile.Compression.none
        if compression != .none {
            let types = Set(tensors.map(\.type))
            let width = types == [.f16] || types == [.bf16] ? 2 : (types == [.f32] ? 4 : 1)
            let candidate: [UInt8]? = try decoded.withUnsafeBytes { raw in
                if width == 1 { return try LZ4Codec.compress(raw) }
                var planes = [UInt8](repeating: 0, count: raw.count)
                planes.withUnsafeMutableBytes { LZ4Codec.shuffle(raw, width: width, into: $0) }
                return try planes.withUnsafeBytes { try LZ4Codec.compress($0) }
            }
            if let candidate, Double(candidate.count) <= 0.9 * Double(decoded.count) {
                let method: MoEStoreFile.Compression = width == 2 ? .lz4Shuffle2 : (width == 4 ? .lz4Shuffle4 : .lz4)
                var keep = true
                if compression == .auto {
                    // Time this record's decode (best of 3) and compare load times.
                    var output = [UInt8](repeating: 0, count: decoded.count), scratch = output
                    var best = Double.infinity
                    for _ in 0..<3 {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        try candidate.withUnsafeBytes { c in
                            try output.withUnsafeMutableBytes { o in
                                try scratch.withUnsafeMutableBytes { try LZ4Codec.decode(c, compression: method, into: o, scratch: $0, what: "record") }
                            }
                        }
                        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                    }
                    let raw = Double(decoded.count) / diskBandwidth
                    let compressed = Double(candidate.count) / diskBandwidth + best
                    keep = compressed <= StoreWriter.requiredGain * raw
                }
                if keep {
                    stored = candidate
                    method0 = method
                    compressedRecords += 1
                }
            }
        }
        try pad(to: ExpertRecordLayout.recordAlignment)
        let checksum = stored.withUnsafeBytes { XXH64.hash($0) }
        experts.append(.init(layer: layer, expert: expert, offset: position, storedLength: stored.count, decodedLength: decoded.count,
                             compression: method0, checksum: checksum, tensors: layout.manifestEntries))
        try write(stored)
        try pad(to: ExpertRecordLayout.recordAlignment)
        rawExpertBytes += decoded.count
        storedExpertBytes += stored.count
    }

    /// The type miss copies were asked at, once the first is added (the store becomes version 2).
    public private(set) var missCopyType: GGMLType?
    public private(set) var missCopyBytes = 0

    /// Appends the low-bit copy of an expert already added (`moe convert --miss-copy TYPE`): an
    /// uncompressed record laid out as ``ExpertRecordLayout`` says, 4096-aligned and padded.
    /// `planned` is the type asked for (tensors may have fallen back to another).
    public func addMissCopy(layer: Int, expert: Int, planned: GGMLType, tensors: [(type: GGMLType, shape: [Int], bytes: [UInt8])]) throws {
        let name = "miss copy of expert \(expert) of layer \(layer)"
        guard let i = experts.lastIndex(where: { $0.layer == layer && $0.expert == expert }), experts[i].missCopy == nil,
              let layout = ExpertRecordLayout(tensors.map { ($0.type, $0.shape) }),
              zip(layout.tensors, tensors).allSatisfy({ $0.length == $1.bytes.count }) else {
            throw ModelFormatError.invalidTensor(path: partialPath, tensor: name, reason: "no such expert written yet, a second copy, or tensors that do not form a record")
        }
        var decoded = [UInt8](repeating: 0, count: layout.decodedLength)
        for (t, source) in zip(layout.tensors, tensors) {
            decoded.replaceSubrange(t.offset..<(t.offset + t.length), with: source.bytes)
        }
        try pad(to: ExpertRecordLayout.recordAlignment)
        let checksum = isMeasuring ? UInt64.max : decoded.withUnsafeBytes { XXH64.hash($0) }
        experts[i].missCopy = .init(offset: position, length: decoded.count, checksum: checksum, tensors: layout.manifestEntries)
        try write(decoded)
        try pad(to: ExpertRecordLayout.recordAlignment)
        missCopyType = planned
        missCopyBytes += decoded.count
    }

    /// Counts one uncompressed expert record laid out as `layout` without any bytes (measuring writers).
    public func addExpertPlaceholder(layer: Int, expert: Int, layout: ExpertRecordLayout) throws {
        precondition(isMeasuring, "placeholders are for measuring writers")
        try pad(to: ExpertRecordLayout.recordAlignment)
        experts.append(.init(layer: layer, expert: expert, offset: position, storedLength: layout.decodedLength, decodedLength: layout.decodedLength,
                             compression: .none, checksum: UInt64.max, tensors: layout.manifestEntries))
        position += layout.decodedLength
        try pad(to: ExpertRecordLayout.recordAlignment)
        rawExpertBytes += layout.decodedLength
        storedExpertBytes += layout.decodedLength
    }

    /// Stores the tokenizer as a metadata-only GGUF.
    public func setTokenizer(_ gguf: GGUFWriter) throws {
        let bytes = gguf.encode()
        try pad(to: MoEStoreFile.denseAlignment)
        tokenizer = bytes.withUnsafeBytes { .init(offset: position, length: bytes.count, checksum: isMeasuring ? UInt64.max : XXH64.hash($0)) }
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Adds a named section (e.g. predictor statistics).
    public func addSection(_ name: String, bytes: Data) throws {
        try pad(to: MoEStoreFile.denseAlignment)
        sections[name] = bytes.withUnsafeBytes { .init(offset: position, length: bytes.count, checksum: isMeasuring ? UInt64.max : XXH64.hash($0)) }
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes the manifest and the header, syncs, and renames the file into place.
    public func finish(configuration: ModelConfiguration, source: String) throws {
        let manifest = MoEStoreFile.Manifest(
            format: "swiftmoe-store", version: Int(missCopyType == nil ? MoEStoreFile.version : MoEStoreFile.missCopyVersion), configuration: configuration, source: source,
            createdBy: "SwiftMoE moe convert", tokenizer: tokenizer, dense: dense, experts: experts,
            sections: sections.isEmpty ? nil : sections, missCopyType: missCopyType?.description)
        // Miss copies make it a version 2 store, which readers that predate them refuse.
        let version = missCopyType == nil ? MoEStoreFile.version : MoEStoreFile.missCopyVersion
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(manifest)
        try pad(to: MoEStoreFile.denseAlignment)
        let manifestOffset = position
        try json.withUnsafeBytes { try write($0) }
        let header = MoEStoreFile.Header(
            manifestOffset: manifestOffset, manifestLength: json.count,
            manifestChecksum: json.withUnsafeBytes { XXH64.hash($0) }, fileSize: position, version: version)
        guard let handle else {
            finished = true
            return
        }
        // Everything else first, then the header (the magic), then the rename over any old store.
        try handle.sync()
        try header.encode().withUnsafeBytes { try handle.write($0, at: 0) }
        try handle.sync()
        try handle.close()
        try AtomicFile.commit(partialPath, to: outputPath)
        finished = true
    }

    /// Deletes the partial file.
    public func abandon() {
        guard let handle else {
            finished = true
            return
        }
        handle.discard()
        finished = true
    }
}
