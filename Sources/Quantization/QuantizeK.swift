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
                block.setUInt16(108, d)
                packQ3KLevels(levels, block: block)
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
                packQ4KLevels(s.levels, block: block)
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
                packQ5KLevels(s.levels, block: block, scratch: s)
            }
        }
    }

    /// Q4_K level order: elements 64c + l and 64c + 32 + l share byte 16 + 32c + l (low, high nibble).
    static func packQ4KLevels(_ levels: UnsafeMutablePointer<UInt8>, block: UnsafeMutableRawPointer) {
        for chunk in 0..<4 {
            for l in 0..<32 {
                let low = levels[64 * chunk + l], high = levels[64 * chunk + 32 + l]
                block.setByte(16 + 32 * chunk + l, low | high << 4)
            }
        }
    }

    /// Q3_K: high bits go to hmask (element 32k + m: byte m, bit k), low bits to qs.
    static func packQ3KLevels(_ levels: UnsafeMutablePointer<Int8>, block: UnsafeMutableRawPointer) {
        for m in 0..<32 { block.setByte(m, 0) }
        for j in 0..<256 where levels[j] > 3 {
            let m = j % 32
            block.setByte(m, UnsafeRawPointer(block).byte(m) | UInt8(1) << UInt8(j / 32))
            levels[j] -= 4
        }
        pack2Bit(UnsafeMutableRawPointer(levels).assumingMemoryBound(to: UInt8.self), into: block + 32)
    }

    /// Q5_K: the fifth bits to qh (32 bytes), the low nibbles as Q4_K orders them from byte 48.
    static func packQ5KLevels(_ levels: UnsafeMutablePointer<UInt8>, block: UnsafeMutableRawPointer, scratch s: Scratch) {
        let high = s.bytes
        high.update(repeating: 0, count: 32)
        var bit1: UInt8 = 1
        var bit2: UInt8 = 2
        for chunk in 0..<4 {
            for j in 0..<32 {
                var l1 = levels[64 * chunk + j]
                if l1 > 15 {
                    l1 -= 16
                    high[j] |= bit1
                }
                var l2 = levels[64 * chunk + 32 + j]
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

    /// Q6_K: 16 sub-blocks of 16, 6-bit signed levels with a signed 8-bit scale each.
    /// Layout: ``Dequantize/q6_K``.
    public static let q6_K: QuantizeRow = { source, destination, count in q6KBlocks(source, destination, count, importance: nil) }

    /// Q6_K blocks; `importance` (one weight per element, see ``weighted(_:)``) replaces the x²
    /// error weights of the scale search when given, as `quantize_row_q6_K_impl` does.
    static func q6KBlocks(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int, importance: UnsafePointer<Float>?) {
        withScratch { s in
            let levels = UnsafeMutableRawPointer(s.levels).assumingMemoryBound(to: Int8.self)
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 210
                var maxScale: Float = 0
                var maxAbsScale: Float = 0
                for j in 0..<16 {
                    let scale = makeQXQuants(count: 16, nmax: 32, x + 16 * j, levels: levels + 16 * j, weights: importance.map { $0 + b * 256 + 16 * j })
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
        let ls = s.bytes, lm = s.bytes + 8
        for j in 0..<8 {
            ls[j] = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(inverseScale * s.scales[j])))
            lm[j] = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(inverseMin * s.mins[j])))
        }
        storeScaleMinK(x, scales: ls, mins: lm, d: maxScale / 63, dmin: maxMin / 63, nmax: nmax, scratch: s, block: block)
    }

    /// Stores d, dmin and the 6-bit sub-block scales `scales[8]` and mins `mins[8]` (each ≤ 63)
    /// of a Q4_K/Q5_K block and re-derives the levels (0...nmax) in `scratch.levels` against them.
    static func storeScaleMinK(
        _ x: UnsafePointer<Float>, scales ls: UnsafePointer<UInt8>, mins lm: UnsafePointer<UInt8>, d dValue: Float, dmin dminValue: Float,
        nmax: Int, scratch s: Scratch, block: UnsafeMutableRawPointer
    ) {
        let packed = s.bytes + 16
        packed.update(repeating: 0, count: 12)
        for j in 0..<8 {
            let ls = ls[j], lm = lm[j]
            if j < 4 {
                packed[j] = ls
                packed[j + 4] = lm
            } else {
                packed[j + 4] = (ls & 0x0F) | (lm & 0x0F) << 4
                packed[j - 4] |= (ls >> 4) << 6
                packed[j] |= (lm >> 4) << 6
            }
        }
        let d = block.setHalf(0, dValue)
        let dmin = block.setHalf(2, dminValue)
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
