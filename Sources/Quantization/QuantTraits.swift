/// Converts `count` elements (a whole number of blocks) starting at `source` to floats.
///
/// Kernels trust their arguments: `count` is a non-negative multiple of the block size and both
/// buffers hold that many elements. ``GGMLType/dequantize(_:into:count:)`` checks `count`.
/// Any byte pattern is a valid input (a kernel never traps on data).
public typealias DequantizeRow = @Sendable (_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int) -> Void

/// Encodes `count` floats (a whole number of blocks) starting at `source` as blocks at `destination`.
///
/// Same contract as ``DequantizeRow``; ``GGMLType/quantize(_:into:count:)`` checks `count`.
/// Finite inputs give llama.cpp's reference encoding; NaN or infinite inputs give some encoding
/// (never a trap), not a meaningful one.
public typealias QuantizeRow = @Sendable (_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int) -> Void

/// One row of the type-traits table: everything the runtime needs to know about an element type.
///
/// As in ggml, this table is the single place a quantized type is described; adding a type is
/// adding a row. Kernels that are not available for a type are `nil` and callers report
/// ``QuantizationError/unsupported(_:operation:)``.
public struct QuantTraits: Sendable {
    public let type: GGMLType
    /// ggml's name for the type.
    public let name: String
    /// Elements per block (1 for plain element types).
    public let blockSize: Int
    /// Bytes per block.
    public let bytesPerBlock: Int
    /// Dequantization of whole blocks, if this runtime implements it.
    public let dequantize: DequantizeRow?
    /// Quantization (float to this type) of whole blocks, if this runtime implements it.
    public let quantize: QuantizeRow?

    init(
        type: GGMLType, name: String, blockSize: Int, bytesPerBlock: Int,
        dequantize: DequantizeRow?, quantize: QuantizeRow? = nil
    ) {
        self.type = type
        self.name = name
        self.blockSize = blockSize
        self.bytesPerBlock = bytesPerBlock
        self.dequantize = dequantize
        self.quantize = quantize
    }

    /// Bits per weight, including block scales.
    public var bitsPerWeight: Double { Double(bytesPerBlock * 8) / Double(blockSize) }

    /// Bytes used by `count` elements; `nil` unless `count` is a whole number of blocks.
    @inlinable public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }

    /// Table indexed by the raw ggml type id.
    @usableFromInline static let table: [QuantTraits?] = {
        let rows: [QuantTraits] = [
            .init(type: .f32, name: "f32", blockSize: 1, bytesPerBlock: 4, dequantize: Dequantize.f32, quantize: Quantize.f32),
            .init(type: .f16, name: "f16", blockSize: 1, bytesPerBlock: 2, dequantize: Dequantize.f16, quantize: Quantize.f16),
            .init(type: .bf16, name: "bf16", blockSize: 1, bytesPerBlock: 2, dequantize: Dequantize.bf16, quantize: Quantize.bf16),
            .init(type: .q4_0, name: "q4_0", blockSize: 32, bytesPerBlock: 18, dequantize: Dequantize.q4_0, quantize: Quantize.q4_0),
            .init(type: .q4_1, name: "q4_1", blockSize: 32, bytesPerBlock: 20, dequantize: Dequantize.q4_1, quantize: Quantize.q4_1),
            .init(type: .q5_0, name: "q5_0", blockSize: 32, bytesPerBlock: 22, dequantize: Dequantize.q5_0, quantize: Quantize.q5_0),
            .init(type: .q5_1, name: "q5_1", blockSize: 32, bytesPerBlock: 24, dequantize: Dequantize.q5_1, quantize: Quantize.q5_1),
            .init(type: .q8_0, name: "q8_0", blockSize: 32, bytesPerBlock: 34, dequantize: Dequantize.q8_0, quantize: Quantize.q8_0),
            .init(type: .q8_1, name: "q8_1", blockSize: 32, bytesPerBlock: 36, dequantize: nil),
            .init(type: .q2_K, name: "q2_K", blockSize: 256, bytesPerBlock: 84, dequantize: Dequantize.q2_K, quantize: Quantize.q2_K),
            .init(type: .q3_K, name: "q3_K", blockSize: 256, bytesPerBlock: 110, dequantize: Dequantize.q3_K, quantize: Quantize.q3_K),
            .init(type: .q4_K, name: "q4_K", blockSize: 256, bytesPerBlock: 144, dequantize: Dequantize.q4_K, quantize: Quantize.q4_K),
            .init(type: .q5_K, name: "q5_K", blockSize: 256, bytesPerBlock: 176, dequantize: Dequantize.q5_K, quantize: Quantize.q5_K),
            .init(type: .q6_K, name: "q6_K", blockSize: 256, bytesPerBlock: 210, dequantize: Dequantize.q6_K, quantize: Quantize.q6_K),
            .init(type: .q8_K, name: "q8_K", blockSize: 256, bytesPerBlock: 292, dequantize: nil),
            .init(type: .iq2_xxs, name: "iq2_xxs", blockSize: 256, bytesPerBlock: 66, dequantize: Dequantize.iq2_xxs),
            .init(type: .iq2_xs, name: "iq2_xs", blockSize: 256, bytesPerBlock: 74, dequantize: Dequantize.iq2_xs),
            .init(type: .iq3_xxs, name: "iq3_xxs", blockSize: 256, bytesPerBlock: 98, dequantize: Dequantize.iq3_xxs),
            .init(type: .iq1_s, name: "iq1_s", blockSize: 256, bytesPerBlock: 50, dequantize: nil),
            .init(type: .iq4_nl, name: "iq4_nl", blockSize: 32, bytesPerBlock: 18, dequantize: Dequantize.iq4_nl, quantize: Quantize.iq4_nl),
            .init(type: .iq3_s, name: "iq3_s", blockSize: 256, bytesPerBlock: 110, dequantize: Dequantize.iq3_s),
            .init(type: .iq2_s, name: "iq2_s", blockSize: 256, bytesPerBlock: 82, dequantize: nil),
            .init(type: .iq4_xs, name: "iq4_xs", blockSize: 256, bytesPerBlock: 136, dequantize: Dequantize.iq4_xs, quantize: Quantize.iq4_xs),
            .init(type: .i8, name: "i8", blockSize: 1, bytesPerBlock: 1, dequantize: nil),
            .init(type: .i16, name: "i16", blockSize: 1, bytesPerBlock: 2, dequantize: nil),
            .init(type: .i32, name: "i32", blockSize: 1, bytesPerBlock: 4, dequantize: nil),
            .init(type: .i64, name: "i64", blockSize: 1, bytesPerBlock: 8, dequantize: nil),
            .init(type: .f64, name: "f64", blockSize: 1, bytesPerBlock: 8, dequantize: nil),
            .init(type: .iq1_m, name: "iq1_m", blockSize: 256, bytesPerBlock: 56, dequantize: nil),
            .init(type: .tq1_0, name: "tq1_0", blockSize: 256, bytesPerBlock: 54, dequantize: nil),
            .init(type: .tq2_0, name: "tq2_0", blockSize: 256, bytesPerBlock: 66, dequantize: nil),
            .init(type: .mxfp4, name: "mxfp4", blockSize: 32, bytesPerBlock: 17, dequantize: Dequantize.mxfp4, quantize: Quantize.mxfp4),
        ]
        var table = [QuantTraits?](repeating: nil, count: 40)
        for row in rows { table[Int(row.type.rawValue)] = row }
        return table
    }()
}

/// Errors from (de)quantization and dot products.
public enum QuantizationError: Error, Equatable, CustomStringConvertible {
    /// The runtime has no kernel of this kind for the type yet.
    case unsupported(GGMLType, operation: String)
    /// A row length that is not a whole number of the type's blocks.
    case partialBlock(GGMLType, elements: Int)

    public var description: String {
        switch self {
        case let .unsupported(type, operation):
            return "\(operation) of \(type) tensors is not supported by this build"
        case let .partialBlock(type, elements):
            return "\(elements) elements is not a whole number of \(type) blocks of \(type.traits.blockSize)"
        }
    }
}
