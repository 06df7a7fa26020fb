import ModelFormats
import Quantization

/// How an expert's planned type turns into bytes of a `.moe` store: the type fallbacks for
/// rows a block does not divide, and the footprint of a record. The one place `moe convert`,
/// the bit planner and the calibration's in-memory copies agree on.
public enum StoreLayout {
    /// Types used when a row length is not a whole number of the planned type's blocks,
    /// closest in bits per weight with 32-element blocks, then f16.
    public static let fallbackTypes: [GGMLType: GGMLType] = [.q2_K: .q4_0, .q3_K: .q4_0, .q4_K: .q4_0, .q5_K: .q5_0, .q6_K: .q8_0]

    /// The type a tensor with rows of `rowLength` is actually stored at when `planned` is asked for.
    public static func storableType(_ planned: GGMLType, rowLength: Int) -> GGMLType {
        var type = planned
        if rowLength % type.traits.blockSize != 0, let next = fallbackTypes[type] { type = next }
        if rowLength % type.traits.blockSize != 0 { type = .f16 }
        return type
    }

    /// One stored tensor of an expert: its type, ggml shape and byte length.
    public struct Tensor: Sendable, Equatable {
        public var type: GGMLType
        public var shape: [Int]
        public var length: Int
        public init(type: GGMLType, shape: [Int], length: Int) {
            self.type = type
            self.shape = shape
            self.length = length
        }
    }

    /// The tensors an expert whose tensors are `source` (gate, up, down as type and shape)
    /// becomes at `planned` (nil keeps the source's types and bytes).
    public static func tensors(of source: [(type: GGMLType, shape: [Int])], at planned: GGMLType?) -> [Tensor] {
        source.map { s in
            let elements = s.shape.reduce(1, *)
            let type = planned.map { $0 == s.type ? s.type : storableType($0, rowLength: s.shape.first ?? 1) } ?? s.type
            return Tensor(type: type, shape: s.shape, length: type.traits.byteCount(elements: elements) ?? 0)
        }
    }

    /// Bytes of a record's decoded form: tensors one after another, each starting on 64 bytes.
    public static func decodedLength(_ tensors: [Tensor]) -> Int {
        var length = 0
        for (i, t) in tensors.enumerated() {
            if i > 0 { length = (length + 63) / 64 * 64 }
            length += t.length
        }
        return length
    }

    /// Bytes an uncompressed record takes in the file, padding included (compression only
    /// ever makes it smaller: a record is compressed only when that saves 10%).
    public static func recordFootprint(_ tensors: [Tensor]) -> Int {
        let a = MoEStoreFile.recordAlignment
        return (decodedLength(tensors) + a - 1) / a * a
    }
}
