import Foundation

extension Quantize {
    /// MXFP4 as `quantize_row_mxfp4_ref`: per 32 values the shared exponent
    /// `e = floor(log2(max|x|)) - 2 + 127` (0 for an all-zero block), then each value's nearest
    /// doubled E2M1 level times `2^(e - 128)` (the first of equally near levels), value j in the
    /// low nibble of byte j and value j + 16 in its high nibble. Lets the bit planner offer
    /// MXFP4 (GPT-OSS's own expert type) next to the k-quants.
    public static let mxfp4: QuantizeRow = { source, destination, count in
        let levels = Dequantize.mxfp4Levels
        for b in 0..<count / 32 {
            let x = source + b * 32
            let block = destination + b * 17
            var amax: Float = 0
            for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]) }
            // C converts the float to uint8_t; out-of-range values (denormal or huge blocks) are
            // clamped here instead of being undefined.
            let exponent: Float = amax > 0 ? (log2f(amax)).rounded(.down) - 2 + 127 : 0
            let e = UInt8(max(0, min(255, exponent.isFinite ? exponent : 255)))
            let d = e8m0Half(e)
            block.setByte(0, e)
            func best(_ v: Float) -> UInt8 {
                var index = 0
                var error = abs(levels[0] * d - v)
                for i in 1..<16 {
                    let candidate = abs(levels[i] * d - v)
                    if candidate < error {
                        index = i
                        error = candidate
                    }
                }
                return UInt8(index)
            }
            for j in 0..<16 { block.setByte(1 + j, best(x[j]) | (best(x[j + 16]) << 4)) }
        }
    }

    /// ggml's `ggml_e8m0_to_fp32_half`: `2^(e - 128)`, with the two denormal patterns below 2.
    static func e8m0Half(_ e: UInt8) -> Float {
        Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << UInt32(e) : UInt32(e - 1) << 23)
    }
}
