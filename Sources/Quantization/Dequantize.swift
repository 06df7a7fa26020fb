/// Scalar reference dequantizers, one per supported type. Each converts whole blocks.
///
/// Layouts follow ggml-common.h:
///
///     Q8_0 block (34 bytes):  | d: f16 | qs: 32 x int8 |          x = d * q
///     Q4_0 block (18 bytes):  | d: f16 | qs: 16 bytes  |          x = d * (nibble - 8),
///                             low nibbles are elements 0..15, high nibbles 16..31
public enum Dequantize {
    public static let f32: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = source.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        }
    }

    public static let f16: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = Half.toFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }

    public static let bf16: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = Half.bf16ToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }

    public static let q8_0: DequantizeRow = { source, destination, count in
        let blocks = count / 32
        for b in 0..<blocks {
            let block = source + b * 34
            let d = Half.toFloat(block.loadUnaligned(as: UInt16.self))
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            let out = destination + b * 32
            for j in 0..<32 { out[j] = d * Float(qs[j]) }
        }
    }

    public static let q4_0: DequantizeRow = { source, destination, count in
        let blocks = count / 32
        for b in 0..<blocks {
            let block = source + b * 18
            let d = Half.toFloat(block.loadUnaligned(as: UInt16.self))
            let qs = (block + 2).assumingMemoryBound(to: UInt8.self)
            let out = destination + b * 32
            for j in 0..<16 {
                out[j] = d * Float(Int(qs[j] & 0x0F) - 8)
                out[j + 16] = d * Float(Int(qs[j] >> 4) - 8)
            }
        }
    }
}

extension GGMLType {
    /// Dequantizes `count` elements of this type from `source` into `destination`.
    /// - Throws: ``QuantizationError`` when the type has no dequantizer or `count` is not whole blocks.
    public func dequantize(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let traits = self.traits
        guard let kernel = traits.dequantize else { throw QuantizationError.unsupported(self, operation: "dequantization") }
        guard count % traits.blockSize == 0 else { throw QuantizationError.partialBlock(self, elements: count) }
        kernel(source, destination, count)
    }

    /// Whether this build can compute with tensors of this type.
    public var isComputable: Bool { traits.dequantize != nil }
}
