import Quantization

/// Where the tensors of one expert record of a `.moe` store lie (docs/store-format.md). The one
/// definition the writer (`StoreWriter`, also when it only measures), the reader
/// (``MoEStoreFile``, which accepts only records laid out exactly so), the expert catalog (which
/// lays GGUF and Hugging Face experts out the same way in the pool), the in-memory requantized
/// experts and the store-size planner share.
///
/// ### Layout
///
///     0               gate
///     up offset       up     (end of gate rounded up to a multiple of 64, zeros between)
///     down offset     down   (end of up rounded up to a multiple of 64, zeros between)
///     decodedLength   end of down: nothing follows the last tensor
///     paddedLength    rounded up to a multiple of 4096, zeros after the record's bytes
///
/// The tensors follow one another in ``ExpertTensor`` order, each starting at the next multiple
/// of ``tensorAlignment``. The decoded record ends where its last tensor ends: there is no
/// padding after the last tensor. In the file a record starts at a multiple of
/// ``recordAlignment`` and its stored bytes (the decoded bytes, or their LZ4 form) are padded
/// with zeros to the next multiple, so one O_DIRECT read fetches the record and the next one
/// starts aligned.
public struct ExpertRecordLayout: Sendable, Equatable {
    /// Every tensor of a record starts at a multiple of this many bytes of the decoded record.
    public static let tensorAlignment = 64
    /// Records start at multiples of this many bytes of the file and are padded to one.
    public static let recordAlignment = 4096

    /// One tensor of the record.
    public struct Tensor: Sendable, Equatable {
        public var type: GGMLType
        /// ggml order.
        public var shape: [Int]
        /// From the start of the decoded record.
        public var offset: Int
        public var length: Int

        public init(type: GGMLType, shape: [Int], offset: Int, length: Int) {
            self.type = type
            self.shape = shape
            self.offset = offset
            self.length = length
        }
    }

    /// Gate, up and down, in ``ExpertTensor`` order.
    public let tensors: [Tensor]
    /// Bytes of the decoded record: up to the end of the last tensor.
    public let decodedLength: Int
    /// ``decodedLength`` padded to ``recordAlignment``: the bytes an uncompressed record occupies
    /// in the file (a compressed one is never larger: it is kept only when it saves 10%).
    public let paddedLength: Int

    /// Lays out tensors of these types and ggml shapes, in ``ExpertTensor`` order. Nil unless
    /// there is one per ``ExpertTensor`` case, each shape holds a whole number of its type's
    /// blocks, and the record's length fits in an `Int`.
    public init?(_ tensors: [(type: GGMLType, shape: [Int])]) {
        guard tensors.count == ExpertTensor.allCases.count else { return nil }
        var laidOut: [Tensor] = []
        var end = 0
        for t in tensors {
            var elements = 1
            for d in t.shape {
                guard d >= 0 else { return nil }
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { return nil }
                elements = product
            }
            guard !t.shape.isEmpty, let length = t.type.traits.byteCount(elements: elements),
                  let offset = laidOut.isEmpty ? 0 : alignUp(end, to: ExpertRecordLayout.tensorAlignment) else { return nil }
            let (next, overflow) = offset.addingReportingOverflow(length)
            guard !overflow else { return nil }
            laidOut.append(Tensor(type: t.type, shape: t.shape, offset: offset, length: length))
            end = next
        }
        guard let padded = alignUp(end, to: ExpertRecordLayout.recordAlignment) else { return nil }
        self.tensors = laidOut
        decodedLength = end
        paddedLength = padded
    }

    /// The layout of a record read from a store's manifest: nil unless its tensors are named
    /// as ``ExpertTensor/recordName`` in order, have known types, and lie exactly where this
    /// layout puts them, with the record's `decodedLength` ending at the last one.
    public init?(record: MoEStoreFile.ExpertRecord) {
        guard record.tensors.map(\.name) == ExpertTensor.allCases.map(\.recordName) else { return nil }
        var source: [(type: GGMLType, shape: [Int])] = []
        for t in record.tensors {
            guard let type = GGMLType(name: t.type) else { return nil }
            source.append((type, t.shape))
        }
        guard let layout = ExpertRecordLayout(source), layout.decodedLength == record.decodedLength,
              zip(layout.tensors, record.tensors).allSatisfy({ $0.offset == $1.offset && $0.length == $1.length }) else { return nil }
        self = layout
    }

    /// A record's `storedLength` stored bytes padded to ``recordAlignment``: what one read of
    /// the record fetches. Nil when negative or too large for an `Int` (lengths come from files).
    public static func paddedLength(storedLength: Int) -> Int? {
        alignUp(storedLength, to: recordAlignment)
    }

    /// The tensors as a manifest lists them (named, offsets within the record, no checksum).
    public var manifestEntries: [MoEStoreFile.TensorEntry] {
        zip(ExpertTensor.allCases, tensors).map { kind, t in
            MoEStoreFile.TensorEntry(name: kind.recordName, type: t.type.description, shape: t.shape, offset: t.offset, length: t.length, checksum: nil)
        }
    }
}
