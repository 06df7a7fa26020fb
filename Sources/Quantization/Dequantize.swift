/// Scalar reference dequantizers, one per supported type. Each converts whole blocks.
///
/// Layouts follow llama.cpp's `ggml-common.h`; the arithmetic follows `dequantize_row_*` in
/// `ggml-quants.c` and gguf-py's `gguf.quants` operation for operation (all in Float, same order,
/// no fused multiply-add), so results are bit-identical to both. For every type here the two
/// references agree with each other; `tools/make_quant_vectors.py` checks that.
///
/// This file has the plain and 32-element block types; `DequantizeK.swift` has the 256-element
/// super-block types (K-quants, IQ4_XS).
public enum Dequantize {
    /// ### Layout
    ///
    ///     | x: f32 |        (4 bytes per element)
    public static let f32: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = source.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        }
    }

    /// ### Layout
    ///
    ///     | x: f16 |        (2 bytes per element; NaN payloads are kept, as numpy does)
    public static let f16: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = source.half(2 * i)
        }
    }

    /// ### Layout
    ///
    ///     | x: bf16 |       (2 bytes per element: the high half of an f32)
    public static let bf16: DequantizeRow = { source, destination, count in
        for i in 0..<count {
            destination[i] = Half.bf16ToFloat(source.uint16(2 * i))
        }
    }

    /// ### Layout (34 bytes, 32 elements)
    ///
    ///     | d: f16 | qs: 32 x int8 |          x[j] = d * qs[j]
    public static let q8_0: DequantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let block = source + b * 34
            let d = block.half(0)
            let out = destination + b * 32
            for j in 0..<32 { out[j] = d * Float(Int8(bitPattern: block.byte(2 + j))) }
        }
    }

    /// ### Layout (18 bytes, 32 elements)
    ///
    ///     | d: f16 | qs: 16 bytes |
    ///
    ///     qs[j] = | hi nibble: element j+16 | lo nibble: element j |
    ///     x = d * (nibble - 8)
    public static let q4_0: DequantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let block = source + b * 18
            let d = block.half(0)
            let out = destination + b * 32
            for j in 0..<16 {
                let q = block.byte(2 + j)
                out[j] = Float(Int(q & 0x0F) - 8) * d
                out[j + 16] = Float(Int(q >> 4) - 8) * d
            }
        }
    }

    /// ### Layout (20 bytes, 32 elements)
    ///
    ///     | d: f16 | m: f16 | qs: 16 bytes |
    ///
    ///     qs[j] = | hi nibble: element j+16 | lo nibble: element j |
    ///     x = nibble * d + m
    public static let q4_1: DequantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let block = source + b * 20
            let d = block.half(0)
            let m = block.half(2)
            let out = destination + b * 32
            for j in 0..<16 {
                let q = block.byte(4 + j)
                out[j] = Float(q & 0x0F) * d + m
                out[j + 16] = Float(q >> 4) * d + m
            }
        }
    }

    /// ### Layout (22 bytes, 32 elements)
    ///
    ///     | d: f16 | qh: u32 | qs: 16 bytes |
    ///
    ///     qs[j]     = | hi nibble: low 4 bits of element j+16 | lo nibble: of element j |
    ///     qh bit i  = bit 4 of element i
    ///     x = d * (q - 16)
    public static let q5_0: DequantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let block = source + b * 22
            let d = block.half(0)
            let qh = block.uint32(2)
            let out = destination + b * 32
            for j in 0..<16 {
                let q = block.byte(6 + j)
                let high0 = Int((qh >> UInt32(j)) << 4) & 0x10
                let high1 = Int(qh >> UInt32(j + 12)) & 0x10
                out[j] = Float((Int(q & 0x0F) | high0) - 16) * d
                out[j + 16] = Float((Int(q >> 4) | high1) - 16) * d
            }
        }
    }

    /// ### Layout (24 bytes, 32 elements)
    ///
    ///     | d: f16 | m: f16 | qh: u32 | qs: 16 bytes |
    ///
    ///     element bits as in Q5_0;   x = q * d + m
    public static let q5_1: DequantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let block = source + b * 24
            let d = block.half(0)
            let m = block.half(2)
            let qh = block.uint32(4)
            let out = destination + b * 32
            for j in 0..<16 {
                let q = block.byte(8 + j)
                let high0 = Int((qh >> UInt32(j)) << 4) & 0x10
                let high1 = Int(qh >> UInt32(j + 12)) & 0x10
                out[j] = Float(Int(q & 0x0F) | high0) * d + m
                out[j + 16] = Float(Int(q >> 4) | high1) * d + m
            }
        }
    }

    /// The 16 non-linear levels of IQ4_NL and IQ4_XS (`kvalues_iq4nl`).
    static let iq4Levels: [Float] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    /// ### Layout (18 bytes, 32 elements)
    ///
    ///     | d: f16 | qs: 16 bytes |
    ///
    ///     qs[j] = | hi nibble: element j+16 | lo nibble: element j |
    ///     x = d * kvalues_iq4nl[nibble]      (-127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113)
    public static let iq4_nl: DequantizeRow = { source, destination, count in
        iq4Levels.withUnsafeBufferPointer { levels in
            for b in 0..<count / 32 {
                let block = source + b * 18
                let d = block.half(0)
                let out = destination + b * 32
                for j in 0..<16 {
                    let q = block.byte(2 + j)
                    out[j] = d * levels[Int(q & 0x0F)]
                    out[j + 16] = d * levels[Int(q >> 4)]
                }
            }
        }
    }

    /// The 16 FP4 (E2M1) values, doubled (`kvalues_mxfp4`); the block scale is halved to match.
    static let mxfp4Levels: [Float] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// ### Layout (17 bytes, 32 elements)
    ///
    ///     | e: u8 (E8M0) | qs: 16 bytes |
    ///
    ///     qs[j] = | hi nibble: element j+16 | lo nibble: element j |
    ///     x = kvalues_mxfp4[nibble] * 2^(e - 128)      (0 1 2 3 4 6 8 12, then negated)
    ///
    /// `e` = 0 and 1 give the subnormal scales 2^-128 and 2^-127; `e` = 255 is not treated as
    /// NaN (as in ggml), so its largest levels overflow to infinity.
    public static let mxfp4: DequantizeRow = { source, destination, count in
        mxfp4Levels.withUnsafeBufferPointer { levels in
            for b in 0..<count / 32 {
                let block = source + b * 17
                let d = e8m0Half(block.byte(0))
                let out = destination + b * 32
                for j in 0..<16 {
                    let q = block.byte(1 + j)
                    out[j] = levels[Int(q & 0x0F)] * d
                    out[j + 16] = levels[Int(q >> 4)] * d
                }
            }
        }
    }

    /// Half of the E8M0 scale `2^(e - 127)`, exactly (ggml's `ggml_e8m0_to_fp32_half`).
    @inline(__always) static func e8m0Half(_ e: UInt8) -> Float {
        e < 2 ? Float(bitPattern: UInt32(0x0020_0000) << UInt32(e)) : Float(bitPattern: UInt32(e - 1) << 23)
    }
}

extension GGMLType {
    /// Dequantizes `count` elements of this type from `source` into `destination`.
    ///
    /// `source` needs no particular alignment. Every byte pattern is accepted: f16 scales that
    /// are NaN or infinite simply produce NaN or infinite outputs.
    /// - Throws: ``QuantizationError`` when the type has no dequantizer or `count` is not a
    ///   whole number of blocks.
    public func dequantize(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let traits = self.traits
        guard let kernel = traits.dequantize else { throw QuantizationError.unsupported(self, operation: "dequantization") }
        guard traits.byteCount(elements: count) != nil else { throw QuantizationError.partialBlock(self, elements: count) }
        kernel(source, destination, count)
    }

    /// Whether this build can compute with tensors of this type.
    public var isComputable: Bool { traits.dequantize != nil }
}
