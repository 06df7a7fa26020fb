/// Scalar reference quantizers (float to type), one per type this runtime writes.
///
/// Each is a port of llama.cpp's deterministic reference (`quantize_row_*_ref` in
/// `ggml-quants.c`), operation for operation in Float, so the bytes are identical to what
/// llama.cpp (and, for the types it implements, gguf-py's `gguf.quants.quantize`) produces.
/// Block layouts are documented on the matching ``Dequantize`` kernels.
///
/// This file has the plain and 32-element types; `QuantizeK.swift` has the K-quants.
public enum Quantize {
    public static let f32: QuantizeRow = { source, destination, count in
        for i in 0..<count {
            destination.storeBytes(of: source[i], toByteOffset: 4 * i, as: Float.self)
        }
    }

    /// Round to nearest, ties to even, like ggml and numpy's `astype(float16)`. NaN becomes the
    /// quiet NaN 0x7E00 (with its sign) as in ggml; numpy would keep the top payload bits.
    public static let f16: QuantizeRow = { source, destination, count in
        for i in 0..<count {
            destination.setHalf(2 * i, source[i])
        }
    }

    /// Round to nearest, ties to even (NaN becomes a quiet NaN), like ggml and gguf.quants.
    public static let bf16: QuantizeRow = { source, destination, count in
        for i in 0..<count {
            destination.setUInt16(2 * i, Half.floatToBF16(source[i]))
        }
    }

    /// `d = max|x| / 127`, `q = round(x / d)` (halves away from zero), as `quantize_row_q8_0_ref`.
    public static let q8_0: QuantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 34
            var amax: Float = 0
            for j in 0..<32 {
                let v = abs(x[j])
                amax = amax > v ? amax : v  // C's MAX(amax, v), including its NaN behaviour
            }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(0, d)
            for j in 0..<32 {
                let q = truncatingToInt32((x[j] * id).rounded(.toNearestOrAwayFromZero))
                block.setByte(2 + j, UInt8(truncatingIfNeeded: q))
            }
        }
    }

    /// `d = -(signed value of largest magnitude) / 8`, `q = min(15, trunc(x / d + 8.5))`,
    /// as `quantize_row_q4_0_ref`.
    public static let q4_0: QuantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 18
            let max = signedAbsoluteMax(x, 32)
            let d = max / -8
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(0, d)
            for j in 0..<16 {
                let q0 = clampedNibble(x[j] * id + 8.5, limit: 15)
                let q1 = clampedNibble(x[j + 16] * id + 8.5, limit: 15)
                block.setByte(2 + j, q0 | q1 << 4)
            }
        }
    }

    /// `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - m) / d + 0.5))`,
    /// as `quantize_row_q4_1_ref`.
    public static let q4_1: QuantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 20
            let (min, max) = minMax(x, 32)
            let d = (max - min) / 15
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(0, d)
            block.setHalf(2, min)
            for j in 0..<16 {
                let q0 = clampedNibble((x[j] - min) * id + 0.5, limit: 15)
                let q1 = clampedNibble((x[j + 16] - min) * id + 0.5, limit: 15)
                block.setByte(4 + j, q0 | q1 << 4)
            }
        }
    }

    /// `d = -(signed value of largest magnitude) / 16`, `q = min(31, trunc(x / d + 16.5))`,
    /// as `quantize_row_q5_0_ref`.
    public static let q5_0: QuantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 22
            let max = signedAbsoluteMax(x, 32)
            let d = max / -16
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(0, d)
            var qh: UInt32 = 0
            for j in 0..<16 {
                let q0 = clampedNibble(x[j] * id + 16.5, limit: 31)
                let q1 = clampedNibble(x[j + 16] * id + 16.5, limit: 31)
                block.setByte(6 + j, (q0 & 0x0F) | (q1 & 0x0F) << 4)
                qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
                qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
            }
            block.setUInt32(2, qh)
        }
    }

    /// `d = (max - min) / 31`, `m = min`, `q = trunc((x - m) / d + 0.5)`,
    /// as `quantize_row_q5_1_ref`.
    public static let q5_1: QuantizeRow = { source, destination, count in
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 24
            let (min, max) = minMax(x, 32)
            let d = (max - min) / 31
            let id: Float = d != 0 ? 1 / d : 0
            block.setHalf(0, d)
            block.setHalf(2, min)
            var qh: UInt32 = 0
            for j in 0..<16 {
                // The C code casts straight to uint8_t, without a clamp.
                let q0 = UInt8(truncatingIfNeeded: truncatingToInt32((x[j] - min) * id + 0.5))
                let q1 = UInt8(truncatingIfNeeded: truncatingToInt32((x[j + 16] - min) * id + 0.5))
                block.setByte(8 + j, (q0 & 0x0F) | (q1 & 0x0F) << 4)
                qh |= UInt32((q0 & 0x10) >> 4) << UInt32(j)
                qh |= UInt32((q1 & 0x10) >> 4) << UInt32(j + 16)
            }
            block.setUInt32(4, qh)
        }
    }

    /// The element of largest magnitude, with its sign (the first one on ties).
    @inline(__always) static func signedAbsoluteMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var amax: Float = 0
        var max: Float = 0
        for j in 0..<n where amax < abs(x[j]) {
            amax = abs(x[j])
            max = x[j]
        }
        return max
    }

    /// Smallest and largest element, starting from ±FLT_MAX as the C code does.
    @inline(__always) static func minMax(_ x: UnsafePointer<Float>, _ n: Int) -> (min: Float, max: Float) {
        var min = Float.greatestFiniteMagnitude
        var max = -Float.greatestFiniteMagnitude
        for j in 0..<n {
            if x[j] < min { min = x[j] }
            if x[j] > max { max = x[j] }
        }
        return (min, max)
    }

    /// C's `MIN(limit, (int8_t)value)` stored into a `uint8_t`.
    @inline(__always) static func clampedNibble(_ value: Float, limit: Int8) -> UInt8 {
        let q = Int8(truncatingIfNeeded: truncatingToInt32(value))
        return UInt8(bitPattern: Swift.min(limit, q))
    }
}

extension GGMLType {
    /// Quantizes `count` floats from `source` into blocks of this type at `destination`, which
    /// must have room for `traits.byteCount(elements: count)` bytes (no alignment needed).
    ///
    /// The encoding is llama.cpp's reference encoding, byte for byte. Non-finite inputs do not
    /// trap but give meaningless blocks; validate data first if it may hold NaN or infinity.
    /// - Throws: ``QuantizationError`` when the type has no quantizer or `count` is not a whole
    ///   number of blocks.
    public func quantize(_ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer, count: Int) throws {
        let traits = self.traits
        guard let kernel = traits.quantize else { throw QuantizationError.unsupported(self, operation: "quantization") }
        guard traits.byteCount(elements: count) != nil else { throw QuantizationError.partialBlock(self, elements: count) }
        kernel(source, destination, count)
    }

    /// Whether this build can write tensors of this type.
    public var isQuantizable: Bool { traits.quantize != nil }
}
