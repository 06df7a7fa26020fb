/// Reference quantizers of the K-quant super-block types (Q2_K … Q6_K).
///
/// Ports of `quantize_row_q{2,3,4,5,6}_K_ref` from llama.cpp's `ggml-quants.c`, including their
/// helpers (`make_qkx2_quants`, `make_q3_quants`, `make_qx_quants`, `nearest_int`). These are
/// what `llama-quantize` runs when no importance matrix is given. Every float expression keeps
/// the C evaluation order (`w*x*l` is `(w*x)*l`, no fused multiply-add), which makes the
/// output bytes identical to the C reference (Tests/Fixtures/quant holds the C output for
/// Gaussian rows at several scales and for edge cases: zeros, constants, spikes, one-signed
/// rows, outliers, sub-blocks of very different magnitudes).
///
/// Each quantizer first chooses, per sub-block, a float scale (and min) and levels `L`; then
/// quantizes those scales to 4/6/8 bits against an f16 super-block scale; then re-derives the
/// levels against the *quantized* scales, so the encoding is self-consistent.
extension Quantize {
    /// Elements below this magnitude count as zero when choosing a scale (`GROUP_MAX_EPS`).
    static let groupMaxEpsilon: Float = 1e-15

    /// Q2_K: 16 sub-blocks of 16, 2-bit levels with a 4-bit scale and 4-bit min each.
    /// Layout: ``Dequantize/q2_K``.
    public static let q2_K: QuantizeRow = { source, destination, count in
        withScratch { s in
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 84
                var maxScale: Float = 0
                var maxMin: Float = 0
                for j in 0..<16 {
                    for l in 0..<16 { s.weights[l] = abs(x[16 * j + l]) }
                    s.scales[j] = makeQKX2Quants(
                        count: 16, nmax: 3, x + 16 * j, weights: s.weights, levels: s.levels + 16 * j,
                        min: &s.mins[j], auxiliary: s.auxiliary, rmin: -0.5, rdelta: 0.1, steps: 15, absoluteError: true)
                    if s.scales[j] > maxScale { maxScale = s.scales[j] }
                    if s.mins[j] > maxMin { maxMin = s.mins[j] }
                }
                // Sub-block scales and mins as 4-bit multiples of d and dmin.
                let packed = s.bytes
                packed.update(repeating: 0, count: 16)
                var d: UInt16 = 0
                var dmin: UInt16 = 0
                if maxScale > 0 {
                    let iscale = 15 / maxScale
                    for j in 0..<16 { packed[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * s.scales[j])) }
                    d = Half.fromFloat(maxScale / 15)
                }
                if maxMin > 0 {
                    let iscale = 15 / maxMin
                    for j in 0..<16 { packed[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * s.mins[j]) << 4) }
                    dmin = Half.fromFloat(maxMin / 15)
                }
                // Levels against the stored scales.
                for j in 0..<16 {
                    let scale = Half.toFloat(d) * Float(packed[j] & 0x0F)
                    if scale == 0 { continue }
                    let min = Half.toFloat(dmin) * Float(packed[j] >> 4)
                    for i in 0..<16 {
                        let l = nearestInt((x[16 * j + i] + min) / scale)
                        s.levels[16 * j + i] = UInt8(Swift.max(0, Swift.min(3, l)))
                    }
                }
                for j in 0..<16 { block.setByte(j, packed[j]) }
                pack2Bit(s.levels, into: block + 16)
                block.setUInt16(80, d)
                block.setUInt16(82, dmin)
            }
        }
    }

    /// Q3_K: 16 sub-blocks of 16, 3-bit signed levels with a signed 6-bit scale each.
    /// Layout: ``Dequantize/q3_K``.
    public static let q3_K: QuantizeRow = { source, destination, count in
        withScratch { s in
            let levels = UnsafeMutableRawPointer(s.levels).assumingMemoryBound(to: Int8.self)
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 110
                var maxScale: Float = 0
                var amax: Float = 0
                for j in 0..<16 {
                    s.scales[j] = makeQ3Quants(count: 16, nmax: 4, x + 16 * j, levels: levels + 16 * j)
                    let scale = abs(s.scales[j])
                    if scale > amax {
                        amax = scale
                        maxScale = s.scales[j]
                    }
                }
                let packed = s.bytes
                packed.update(repeating: 0, count: 12)
                var d: UInt16 = 0
                if maxScale != 0 {
                    let iscale = -32 / maxScale
                    for j in 0..<16 {
                        let l8 = Int8(truncatingIfNeeded: nearestInt(iscale * s.scales[j]))
                        let l = UInt8(Swift.max(-32, Swift.min(31, Int(l8))) + 32)
                        if j < 8 {
                            packed[j] = l & 0x0F
                        } else {
                            packed[j - 8] |= (l & 0x0F) << 4
                        }
                        packed[j % 4 + 8] |= (l >> 4) << UInt8(2 * (j / 4))
                    }
                    d = Half.fromFloat(1 / iscale)
                }
                for j in 0..<12 { block.setByte(96 + j, packed[j]) }
                for j in 0..<16 {
                    let scale = Half.toFloat(d) * Float(Dequantize.q3KScale(UnsafeRawPointer(block + 96), j))
                    if scale == 0 { continue }
                    for i in 0..<16 {
                        let l = nearestInt(x[16 * j + i] / scale)
                        levels[16 * j + i] = Int8(Swift.max(-4, Swift.min(3, l)) + 4)
                    }
                }
                // High bits go to hmask (element 32k + m: byte m, bit k), low bits to qs.
                for m in 0..<32 { block.setByte(m, 0) }
                for j in 0..<256 where levels[j] > 3 {
                    let m = j % 32
                    block.setByte(m, UnsafeRawPointer(block).byte(m) | UInt8(1) << UInt8(j / 32))
                    levels[j] -= 4
                }
                pack2Bit(s.levels, into: block + 32)
                block.setUInt16(108, d)
            }
        }
    }

    /// Q4_K: 8 sub-blocks of 32, 4-bit levels with a 6-bit scale and 6-bit min each.
    /// Layout: ``Dequantize/q4_K``.
    public static let q4_K: QuantizeRow = { source, destination, count in
        withScratch { s in
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 144
                chooseScaleMinK(x, nmax: 15, rmin: -1, steps: 20, scratch: s, block: block)
                for chunk in 0..<4 {
                    for l in 0..<32 {
                        let low = s.levels[64 * chunk + l], high = s.levels[64 * chunk + 32 + l]
                        block.setByte(16 + 32 * chunk + l, low | high << 4)
                    }
                }
            }
        }
    }

    /// Q5_K: 8 sub-blocks of 32, 5-bit levels with a 6-bit scale and 6-bit min each.
    /// Layout: ``Dequantize/q5_K``.
    public static let q5_K: QuantizeRow = { source, destination, count in
        withScratch { s in
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 176
                chooseScaleMinK(x, nmax: 31, rmin: -0.5, steps: 15, scratch: s, block: block)
                let high = s.bytes
                high.update(repeating: 0, count: 32)
                var bit1: UInt8 = 1
                var bit2: UInt8 = 2
                for chunk in 0..<4 {
                    for j in 0..<32 {
                        var l1 = s.levels[64 * chunk + j]
                        if l1 > 15 {
                            l1 -= 16
                            high[j] |= bit1
                        }
                        var l2 = s.levels[64 * chunk + 32 + j]
                        if l2 > 15 {
                            l2 -= 16
                            high[j] |= bit2
                        }
                        block.setByte(48 + 32 * chunk + j, l1 | l2 << 4)
                    }
                    bit1 <<= 2
                    bit2 <<= 2
                }
                for j in 0..<32 { block.setByte(16 + j, high[j]) }
            }
        }
    }

    /// Q6_K: 16 sub-blocks of 16, 6-bit signed levels with a signed 8-bit scale each.
    /// Layout: ``Dequantize/q6_K``.
    public static let q6_K: QuantizeRow = { source, destination, count in
        withScratch { s in
            let levels = UnsafeMutableRawPointer(s.levels).assumingMemoryBound(to: Int8.self)
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 210
                var maxScale: Float = 0
                var maxAbsScale: Float = 0
                for j in 0..<16 {
                    let scale = makeQXQuants(count: 16, nmax: 32, x + 16 * j, levels: levels + 16 * j)
                    s.scales[j] = scale
                    if abs(scale) > maxAbsScale {
                        maxAbsScale = abs(scale)
                        maxScale = scale
                    }
                }
                if maxAbsScale < groupMaxEpsilon {
                    for j in 0..<210 { block.setByte(j, 0) }
                    continue
                }
                let iscale = -128 / maxScale
                let d = block.setHalf(208, 1 / iscale)
                for j in 0..<16 {
                    let scale = Int8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * s.scales[j])))
                    block.setByte(192 + j, UInt8(bitPattern: scale))
                    let step = Half.toFloat(d) * Float(scale)
                    if step == 0 { continue }
                    for i in 0..<16 {
                        let l = nearestInt(x[16 * j + i] / step)
                        levels[16 * j + i] = Int8(Swift.max(-32, Swift.min(31, l)) + 32)
                    }
                }
                for half in 0..<2 {
                    let run = s.levels + 128 * half
                    for l in 0..<32 {
                        block.setByte(64 * half + l, (run[l] & 0x0F) | (run[l + 64] & 0x0F) << 4)
                        block.setByte(64 * half + 32 + l, (run[l + 32] & 0x0F) | (run[l + 96] & 0x0F) << 4)
                        let high = run[l] >> 4 | (run[l + 32] >> 4) << 2 | (run[l + 64] >> 4) << 4 | (run[l + 96] >> 4) << 6
                        block.setByte(128 + 32 * half + l, high)
                    }
                }
            }
        }
    }
}

// MARK: - Shared steps

extension Quantize {
    /// Working memory of one quantizer call, reused across its blocks.
    struct Scratch {
        /// Levels of the 256 elements of the current block (as UInt8, or Int8 by rebinding).
        let levels: UnsafeMutablePointer<UInt8>
        /// Candidate levels of one sub-block.
        let auxiliary: UnsafeMutablePointer<UInt8>
        /// Error weights of one sub-block.
        let weights: UnsafeMutablePointer<Float>
        /// Per-sub-block float scales and mins.
        let scales: UnsafeMutablePointer<Float>
        let mins: UnsafeMutablePointer<Float>
        /// 32 bytes for packing scales or high bits before they are stored.
        let bytes: UnsafeMutablePointer<UInt8>
    }

    /// Runs `body` with fresh scratch memory (freed afterwards; do not let the pointers escape).
    static func withScratch(_ body: (Scratch) -> Void) {
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 256 + 32 + 32)
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: 32 + 16 + 16)
        defer {
            bytes.deallocate()
            floats.deallocate()
        }
        bytes.initialize(repeating: 0, count: 256 + 32 + 32)
        floats.initialize(repeating: 0, count: 64)
        body(Scratch(
            levels: bytes, auxiliary: bytes + 256, weights: floats, scales: floats + 32, mins: floats + 48, bytes: bytes + 288))
    }

    /// Q2_K and Q3_K level order: elements 128h + 32k + l go to byte 32h + l, bits 2k..2k+1.
    static func pack2Bit(_ levels: UnsafeMutablePointer<UInt8>, into qs: UnsafeMutableRawPointer) {
        for half in 0..<2 {
            let run = levels + 128 * half
            for l in 0..<32 {
                qs.setByte(32 * half + l, run[l] | run[l + 32] << 2 | run[l + 64] << 4 | run[l + 96] << 6)
            }
        }
    }

    /// The part Q4_K and Q5_K share: per sub-block of 32, choose scale, min and levels
    /// (`make_qkx2_quants` weighted by `rms + |x|`); store d, dmin and the packed 6-bit scales
    /// and mins in `block`; re-derive the levels (0...nmax) in `scratch.levels`.
    static func chooseScaleMinK(
        _ x: UnsafePointer<Float>, nmax: Int, rmin: Float, steps: Int, scratch s: Scratch, block: UnsafeMutableRawPointer
    ) {
        var maxScale: Float = 0
        var maxMin: Float = 0
        for j in 0..<8 {
            let sub = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += sub[l] * sub[l] }
            let rms = (sumX2 / 32).squareRoot()
            for l in 0..<32 { s.weights[l] = rms + abs(sub[l]) }
            s.scales[j] = makeQKX2Quants(
                count: 32, nmax: nmax, sub, weights: s.weights, levels: s.levels + 32 * j,
                min: &s.mins[j], auxiliary: s.auxiliary, rmin: rmin, rdelta: 0.1, steps: steps, absoluteError: false)
            if s.scales[j] > maxScale { maxScale = s.scales[j] }
            if s.mins[j] > maxMin { maxMin = s.mins[j] }
        }
        let inverseScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let inverseMin: Float = maxMin > 0 ? 63 / maxMin : 0
        let packed = s.bytes
        packed.update(repeating: 0, count: 12)
        for j in 0..<8 {
            let ls = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(inverseScale * s.scales[j])))
            let lm = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(inverseMin * s.mins[j])))
            if j < 4 {
                packed[j] = ls
                packed[j + 4] = lm
            } else {
                packed[j + 4] = (ls & 0x0F) | (lm & 0x0F) << 4
                packed[j - 4] |= (ls >> 4) << 6
                packed[j] |= (lm >> 4) << 6
            }
        }
        let d = block.setHalf(0, maxScale / 63)
        let dmin = block.setHalf(2, maxMin / 63)
        for j in 0..<12 { block.setByte(4 + j, packed[j]) }
        for j in 0..<8 {
            let (sc, m) = Dequantize.scaleMinK4(UnsafeRawPointer(block + 4), j)
            let scale = Half.toFloat(d) * Float(sc)
            if scale == 0 { continue }
            let min = Half.toFloat(dmin) * Float(m)
            for i in 0..<32 {
                let l = nearestInt((x[32 * j + i] + min) / scale)
                s.levels[32 * j + i] = UInt8(Swift.max(0, Swift.min(nmax, l)))
            }
        }
    }
}

// MARK: - Scale search (ports of ggml-quants.c helpers)

extension Quantize {
    /// `make_qkx2_quants`: the scale and min (`x ≈ scale * L - min`, `L` in 0...nmax, min ≥ 0)
    /// minimising the weighted error. Starts from the min/max fit, then tries `steps + 1`
    /// alternative scales `(nmax + rmin + rdelta * k) / (max - min)`, solving the weighted
    /// least-squares scale and min for each level assignment. Returns the scale; `min` receives
    /// the (non-negative) min. `absoluteError` chooses |error| over squared error.
    /// (Inlined so the sub-block length is a constant, as in the C code.)
    @inline(__always)
    static func makeQKX2Quants(
        count n: Int, nmax: Int, _ x: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        levels: UnsafeMutablePointer<UInt8>, min theMin: inout Float, auxiliary candidates: UnsafeMutablePointer<UInt8>,
        rmin: Float, rdelta: Float, steps nstep: Int, absoluteError useMad: Bool
    ) -> Float {
        var min = x[0]
        var max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if max == min {
            for i in 0..<n { levels[i] = 0 }
            theMin = -min
            return 0
        }
        var iscale = Float(nmax) / (max - min)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - min))
            levels[i] = UInt8(Swift.max(0, Swift.min(nmax, l)))
            var diff = scale * Float(levels[i]) + min - x[i]
            diff = useMad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 {
            theMin = -min
            return scale
        }
        for step in 0...nstep {
            iscale = (rmin + rdelta * Float(step) + Float(nmax)) / (max - min)
            var sumL: Float = 0
            var sumL2: Float = 0
            var sumXL: Float = 0
            for i in 0..<n {
                let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
                candidates[i] = UInt8(l)
                let w = weights[i]
                let lf = Float(l)
                sumL += w * lf
                sumL2 += w * lf * lf
                sumXL += w * lf * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var error: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(candidates[i]) + thisMin - x[i]
                    diff = useMad ? abs(diff) : diff * diff
                    error += weights[i] * diff
                }
                if error < bestError {
                    for i in 0..<n { levels[i] = candidates[i] }
                    bestError = error
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        theMin = -min
        return scale
    }

    /// `make_q3_quants` with `do_rmse`: a signed scale and levels `L` in 0..<2·nmax
    /// (`x ≈ scale * (L - nmax)`), refined by coordinate descent on the error weighted by x².
    static func makeQ3Quants(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>) -> Float {
        var max: Float = 0
        var amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax {
            amax = abs(x[i])
            max = x[i]
        }
        if amax < groupMaxEpsilon {
            for i in 0..<n { levels[i] = 0 }
            return 0
        }
        let iscale = Float(-nmax) / max
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            levels[i] = Int8(l)
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                var slx = sumlx - w * x[i] * Float(levels[i])
                guard slx > 0 else { continue }
                var sl2 = suml2 - w * Float(levels[i]) * Float(levels[i])
                let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                if newL != Int(levels[i]) {
                    slx += w * x[i] * Float(newL)
                    sl2 += w * Float(newL) * Float(newL)
                    if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        levels[i] = Int8(newL)
                        sumlx = slx
                        suml2 = sl2
                        changed += 1
                    }
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { levels[i] += Int8(nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// `make_qx_quants` with `rmse_type` 1 and no importance weights: a signed scale and
    /// levels `L` in 0..<2·nmax (`x ≈ scale * (L - nmax)`), the best of 19 candidate scales
    /// under the error weighted by x².
    static func makeQXQuants(count n: Int, nmax: Int, _ x: UnsafePointer<Float>, levels: UnsafeMutablePointer<Int8>) -> Float {
        var max: Float = 0
        var amax: Float = 0
        for i in 0..<n where abs(x[i]) > amax {
            amax = abs(x[i])
            max = x[i]
        }
        if amax < groupMaxEpsilon {
            for i in 0..<n { levels[i] = 0 }
            return 0
        }
        var iscale = Float(-nmax) / max
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            levels[i] = Int8(l + nmax)
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        var best = scale * sumlx
        for step in -9...9 where step != 0 {
            iscale = -(Float(nmax) + 0.1 * Float(step)) / max
            sumlx = 0
            suml2 = 0
            for i in 0..<n {
                let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
                let w = x[i] * x[i]
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n {
                    levels[i] = Int8(nmax + Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i]))))
                }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }
}
