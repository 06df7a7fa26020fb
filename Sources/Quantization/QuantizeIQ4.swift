/// Quantizers of the 4-bit non-linear types IQ4_NL and IQ4_XS, plain and importance-weighted.
///
/// Port of `quantize_row_iq4_nl_impl` from llama.cpp's `ggml-quants.c` as `quantize_iq4_nl` and
/// `quantize_iq4_xs` call it (15 trial scales, `ntry` 7), in the same float evaluation order, so
/// the bytes equal `ggml_quantize_chunk(type, …, imatrix)` with and without an importance
/// matrix (Tests/Fixtures/quant/imatrix, made through ggml itself by
/// tools/make_imatrix_vectors.py). Without importance the error weights are x², as in llama.cpp;
/// with it they are `importance[i] · sqrt(σ² + x[i]²)` (σ² = 2·mean x² of the block), as for the
/// K-quants (``Quantize/weighted(_:)``). Levels are the 16 values of `kvalues_iq4nl`; block
/// layouts are documented on ``Dequantize/iq4_nl`` and ``Dequantize/iq4_xs``.
extension Quantize {
    /// IQ4_NL: blocks of 32, one f16 scale each (what `llama-quantize` writes without an imatrix).
    public static let iq4_nl: QuantizeRow = { source, destination, count in
        iq4Blocks(source, destination, count, importance: nil, superBlock: 32)
    }

    /// IQ4_XS: super-blocks of 256 with an f16 scale and a 6-bit scale per 32 elements.
    public static let iq4_xs: QuantizeRow = { source, destination, count in
        iq4Blocks(source, destination, count, importance: nil, superBlock: 256)
    }

    /// `quantize_row_iq4_nl_impl` over whole blocks of `superBlock` (32: IQ4_NL, 256: IQ4_XS).
    /// `importance` holds one weight per element of the row (nil: x² weights).
    static func iq4Blocks(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int,
                          importance: UnsafePointer<Float>?, superBlock: Int) {
        let subBlocks = superBlock / 32
        let bytesPerBlock = superBlock == 32 ? 18 : 136
        let qsOffset = superBlock == 32 ? 2 : 8
        Dequantize.iq4Levels.withUnsafeBufferPointer { v in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: superBlock) { levels in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 32 + subBlocks) { floats in
                    let values = v.baseAddress!, L = levels.baseAddress!
                    let weight = floats.baseAddress!, scales = floats.baseAddress! + 32
                    for b in 0..<count / superBlock {
                        let x = source + b * superBlock
                        let block = destination + b * bytesPerBlock
                        var sigma2: Float = 0
                        for j in 0..<superBlock { sigma2 += x[j] * x[j] }
                        sigma2 *= 2 / Float(superBlock)
                        for j in 0..<superBlock / 2 { block.setByte(qsOffset + j, 0) }
                        var maxScale: Float = 0, amaxScale: Float = 0
                        for ib in 0..<subBlocks {
                            let xb = x + 32 * ib
                            if let qw = importance.map({ $0 + b * superBlock + 32 * ib }) {
                                for j in 0..<32 { weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).squareRoot() }
                            } else {
                                for j in 0..<32 { weight[j] = xb[j] * xb[j] }
                            }
                            scales[ib] = iq4SubBlockScale(xb, weights: weight, levels: L + 32 * ib, values: values)
                            if abs(scales[ib]) > amaxScale {
                                amaxScale = abs(scales[ib])
                                maxScale = scales[ib]
                            }
                        }
                        if subBlocks > 1 {
                            // 6-bit sub-block scales against the f16 super-block scale; levels re-chosen for them.
                            var scalesHigh: UInt16 = 0
                            let d = -maxScale / 32
                            block.setHalf(0, d)
                            let id: Float = d != 0 ? 1 / d : 0
                            for ib in 0..<subBlocks {
                                let l = Swift.max(-32, Swift.min(31, nearestInt(id * scales[ib])))
                                let dl = d * Float(l)
                                let idl: Float = dl != 0 ? 1 / dl : 0
                                for j in 0..<32 { L[32 * ib + j] = iq4BestIndex(idl * x[32 * ib + j], values) }
                                let biased = UInt8(l + 32)
                                if ib % 2 == 0 {
                                    block.setByte(4 + ib / 2, biased & 0x0F)
                                } else {
                                    block.setByte(4 + ib / 2, UnsafeRawPointer(block).byte(4 + ib / 2) | (biased & 0x0F) << 4)
                                }
                                scalesHigh |= UInt16(biased >> 4) << UInt16(2 * (ib % 8))
                            }
                            block.setUInt16(2, scalesHigh)
                        } else {
                            block.setHalf(0, scales[0])
                            let id: Float = scales[0] != 0 ? 1 / scales[0] : 0
                            for j in 0..<32 { L[j] = iq4BestIndex(id * x[j], values) }
                        }
                        for i in 0..<subBlocks {
                            for j in 0..<16 { block.setByte(qsOffset + 16 * i + j, L[32 * i + j] | L[32 * i + 16 + j] << 4) }
                        }
                    }
                }
            }
        }
    }

    /// The scale of one sub-block of 32 minimising the `weights`-weighted squared error over
    /// the non-linear levels: the least-squares scale of the max/−127 fit, then of the 15 trial
    /// scales `(t − 127) / max`, t in −7…7 (0 for a sub-block below ``groupMaxEpsilon``).
    /// `levels` receives the first fit's levels.
    @inline(__always)
    static func iq4SubBlockScale(_ xb: UnsafePointer<Float>, weights: UnsafePointer<Float>, levels: UnsafeMutablePointer<UInt8>,
                                 values: UnsafePointer<Float>) -> Float {
        var amax: Float = 0, max: Float = 0
        for j in 0..<32 where abs(xb[j]) > amax {
            amax = abs(xb[j])
            max = xb[j]
        }
        if amax < groupMaxEpsilon { return 0 }
        var id = 1 / (-max / values[0])
        var sumqx: Float = 0, sumq2: Float = 0
        for j in 0..<32 {
            let l = iq4BestIndex(id * xb[j], values)
            levels[j] = l
            let q = values[Int(l)], w = weights[j]
            sumqx += w * q * xb[j]
            sumq2 += w * q * q
        }
        var d: Float = sumq2 > 0 ? sumqx / sumq2 : 0
        var best = d * sumqx
        for trial in -7...7 {
            id = Float(trial - 127) / max
            sumqx = 0
            sumq2 = 0
            for j in 0..<32 {
                let q = values[Int(iq4BestIndex(id * xb[j], values))], w = weights[j]
                sumqx += w * q * xb[j]
                sumq2 += w * q * q
            }
            if sumq2 > 0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2
                best = d * sumqx
            }
        }
        return d
    }

    /// `best_index_int8`: the index of the level nearest `x` (the upper one on ties), by bisection.
    @inline(__always)
    static func iq4BestIndex(_ x: Float, _ values: UnsafePointer<Float>) -> UInt8 {
        if x <= values[0] { return 0 }
        if x >= values[15] { return 15 }
        var ml = 0, mu = 15
        while mu - ml > 1 {
            let mav = (ml + mu) / 2
            if x < values[mav] { mu = mav } else { ml = mav }
        }
        return UInt8(x - values[mu - 1] < values[mu] - x ? mu - 1 : mu)
    }
}
