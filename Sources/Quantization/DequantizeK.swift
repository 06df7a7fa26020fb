/// Dequantizers of the 256-element super-block types: the K-quants and IQ4_XS.
///
/// Each super-block holds 256 elements as sub-blocks of 16 or 32 with their own small integer
/// scale (and, for some types, min), themselves scaled by f16 super-block factors `d`/`dmin`.
/// Products are formed in the same order as llama.cpp and gguf.quants: first
/// `d * scale` (a Float), then that times the quant, then minus `dmin * min`.
extension Dequantize {
    /// ### Layout (84 bytes, 256 elements; 16 sub-blocks of 16)
    ///
    ///     | scales: 16 bytes | qs: 64 bytes | d: f16 | dmin: f16 |
    ///
    ///     scales[s]  = | min (4 bits) | scale (4 bits) |          for sub-block s
    ///     qs: 2 bits per element. Elements 128h + 32k + l (h < 2, k < 4, l < 32) sit in
    ///         qs[32h + l] at bits 2k..2k+1.
    ///     x = (d * scale) * q - (dmin * min)
    public static let q2_K: DequantizeRow = { source, destination, count in
        for b in 0..<count / 256 {
            let block = source + b * 84
            let d = block.half(80)
            let dmin = block.half(82)
            var out = destination + b * 256
            var sub = 0
            for half in 0..<2 {
                let qs = 16 + 32 * half
                for shift in stride(from: 0, to: 8, by: 2) {
                    for part in 0..<2 {  // two sub-blocks of 16 share each 32-byte run
                        let sc = block.byte(sub)
                        sub += 1
                        let dl = d * Float(sc & 0x0F)
                        let ml = dmin * Float(sc >> 4)
                        for l in 0..<16 {
                            let q = (block.byte(qs + 16 * part + l) >> UInt8(shift)) & 3
                            out[l] = dl * Float(q) - ml
                        }
                        out += 16
                    }
                }
            }
        }
    }

    /// ### Layout (110 bytes, 256 elements; 16 sub-blocks of 16)
    ///
    ///     | hmask: 32 bytes | qs: 64 bytes | scales: 12 bytes | d: f16 |
    ///
    ///     qs:     low 2 bits of each element, arranged as in Q2_K.
    ///     hmask:  element 32k + l has its high bit at hmask[l] bit k (k < 8); a *clear* bit
    ///             means "subtract 4", so q = low2 - (bit ? 0 : 4) ∈ -4...3.
    ///     scales: sixteen 6-bit values, stored as
    ///
    ///         byte  0..7 : | low 4 bits of scale s+8 | low 4 bits of scale s |     (s = byte)
    ///         byte  8..11: | s+12 | s+8 | s+4 | s |   high 2 bits each, s = byte - 8
    ///
    ///             and biased by 32:  scale = value - 32 ∈ -32...31
    ///     x = (d * scale) * q
    public static let q3_K: DequantizeRow = { source, destination, count in
        for b in 0..<count / 256 {
            let block = source + b * 110
            let d = block.half(108)
            var out = destination + b * 256
            var sub = 0
            var mask: UInt8 = 1
            for half in 0..<2 {
                let qs = 32 + 32 * half
                for shift in stride(from: 0, to: 8, by: 2) {
                    for part in 0..<2 {
                        let dl = d * Float(q3KScale(block + 96, sub))
                        sub += 1
                        for l in 0..<16 {
                            let low = Int((block.byte(qs + 16 * part + l) >> UInt8(shift)) & 3)
                            let high = block.byte(16 * part + l) & mask != 0 ? 0 : 4
                            out[l] = dl * Float(low - high)
                        }
                        out += 16
                    }
                    mask <<= 1
                }
            }
        }
    }

    /// Scale `j` (0..<16) of a Q3_K block, unpacked from the 12 bytes at `scales`, minus 32.
    @inline(__always) static func q3KScale(_ scales: UnsafeRawPointer, _ j: Int) -> Int {
        let low = j < 8 ? scales.byte(j) & 0x0F : scales.byte(j - 8) >> 4
        let high = (scales.byte(8 + j % 4) >> UInt8(2 * (j / 4))) & 3
        return Int(low | high << 4) - 32
    }

    /// Scale and min of sub-block `j` (0..<8) of a Q4_K/Q5_K block (ggml's `get_scale_min_k4`).
    ///
    /// ### Layout of the 12 bytes
    ///
    ///     byte 0..3 : | high 2 bits of scale j+4 | scale j (6 bits) |      j = byte
    ///     byte 4..7 : | high 2 bits of min j+4   | min j (6 bits)   |      j = byte - 4
    ///     byte 8..11: | low 4 bits of min j+4 | low 4 bits of scale j+4 |  j = byte - 8
    @inline(__always) static func scaleMinK4(_ scales: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        if j < 4 {
            return (scales.byte(j) & 63, scales.byte(j + 4) & 63)
        }
        let scale = (scales.byte(j + 4) & 0x0F) | ((scales.byte(j - 4) >> 6) << 4)
        let min = (scales.byte(j + 4) >> 4) | ((scales.byte(j) >> 6) << 4)
        return (scale, min)
    }

    /// ### Layout (144 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | dmin: f16 | scales: 12 bytes | qs: 128 bytes |
    ///
    ///     scales: eight 6-bit scales and eight 6-bit mins (see `scaleMinK4`).
    ///     qs: elements 64c + l (l < 32) in the low nibbles of qs[32c + l],
    ///         elements 64c + 32 + l in the high nibbles.
    ///     x = (d * scale) * q - (dmin * min)
    public static let q4_K: DequantizeRow = { source, destination, count in
        for b in 0..<count / 256 {
            let block = source + b * 144
            let d = block.half(0)
            let dmin = block.half(2)
            var out = destination + b * 256
            for chunk in 0..<4 {
                let (sc1, m1) = scaleMinK4(block + 4, 2 * chunk)
                let (sc2, m2) = scaleMinK4(block + 4, 2 * chunk + 1)
                let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                let qs = 16 + 32 * chunk
                for l in 0..<32 { out[l] = d1 * Float(block.byte(qs + l) & 0x0F) - min1 }
                for l in 0..<32 { out[32 + l] = d2 * Float(block.byte(qs + l) >> 4) - min2 }
                out += 64
            }
        }
    }

    /// ### Layout (176 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | dmin: f16 | scales: 12 bytes | qh: 32 bytes | qs: 128 bytes |
    ///
    ///     scales, qs: as in Q4_K (qs holds the low 4 bits).
    ///     qh: bit 4 of element 32s + l is qh[l] bit s (sub-block s < 8).
    ///     x = (d * scale) * q - (dmin * min)
    public static let q5_K: DequantizeRow = { source, destination, count in
        for b in 0..<count / 256 {
            let block = source + b * 176
            let d = block.half(0)
            let dmin = block.half(2)
            var out = destination + b * 256
            var bit1: UInt8 = 1
            var bit2: UInt8 = 2
            for chunk in 0..<4 {
                let (sc1, m1) = scaleMinK4(block + 4, 2 * chunk)
                let (sc2, m2) = scaleMinK4(block + 4, 2 * chunk + 1)
                let d1 = d * Float(sc1), min1 = dmin * Float(m1)
                let d2 = d * Float(sc2), min2 = dmin * Float(m2)
                let qs = 48 + 32 * chunk
                for l in 0..<32 {
                    let q = Int(block.byte(qs + l) & 0x0F) + (block.byte(16 + l) & bit1 != 0 ? 16 : 0)
                    out[l] = d1 * Float(q) - min1
                }
                for l in 0..<32 {
                    let q = Int(block.byte(qs + l) >> 4) + (block.byte(16 + l) & bit2 != 0 ? 16 : 0)
                    out[32 + l] = d2 * Float(q) - min2
                }
                out += 64
                bit1 <<= 2
                bit2 <<= 2
            }
        }
    }

    /// ### Layout (210 bytes, 256 elements; 16 sub-blocks of 16)
    ///
    ///     | ql: 128 bytes | qh: 64 bytes | scales: 16 x int8 | d: f16 |
    ///
    ///     Per half h < 2 (elements 128h ..< 128h + 128), l < 32:
    ///       element 128h +      l : ql[64h + l]      low nibble,  qh[32h + l] bits 0-1
    ///       element 128h + 32 + l : ql[64h + 32 + l] low nibble,  qh[32h + l] bits 2-3
    ///       element 128h + 64 + l : ql[64h + l]      high nibble, qh[32h + l] bits 4-5
    ///       element 128h + 96 + l : ql[64h + 32 + l] high nibble, qh[32h + l] bits 6-7
    ///     q = (nibble | 2 bits << 4) - 32 ∈ -32...31
    ///     x = (d * scale) * q
    public static let q6_K: DequantizeRow = { source, destination, count in
        for b in 0..<count / 256 {
            let block = source + b * 210
            let d = block.half(208)
            for half in 0..<2 {
                let out = destination + b * 256 + 128 * half
                let ql = 64 * half
                let qh = 128 + 32 * half
                let sc = 192 + 8 * half
                for l in 0..<32 {
                    let s = sc + l / 16
                    let low0 = block.byte(ql + l), low1 = block.byte(ql + 32 + l), high = block.byte(qh + l)
                    let q1 = Int((low0 & 0x0F) | ((high >> 0) & 3) << 4) - 32
                    let q2 = Int((low1 & 0x0F) | ((high >> 2) & 3) << 4) - 32
                    let q3 = Int((low0 >> 4) | ((high >> 4) & 3) << 4) - 32
                    let q4 = Int((low1 >> 4) | ((high >> 6) & 3) << 4) - 32
                    out[l] = d * Float(Int8(bitPattern: block.byte(s))) * Float(q1)
                    out[l + 32] = d * Float(Int8(bitPattern: block.byte(s + 2))) * Float(q2)
                    out[l + 64] = d * Float(Int8(bitPattern: block.byte(s + 4))) * Float(q3)
                    out[l + 96] = d * Float(Int8(bitPattern: block.byte(s + 6))) * Float(q4)
                }
            }
        }
    }

    /// ### Layout (136 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | scales_h: u16 | scales_l: 4 bytes | qs: 128 bytes |
    ///
    ///     scale s (6 bits) = low nibble of scales_l[s/2] (s even) or high nibble (s odd)
    ///                        | bits 2s..2s+1 of scales_h << 4,   biased by 32
    ///     qs: 16 bytes per sub-block, nibbles as in IQ4_NL (low: l, high: l + 16)
    ///     x = (d * (scale - 32)) * kvalues_iq4nl[nibble]
    public static let iq4_xs: DequantizeRow = { source, destination, count in
        iq4Levels.withUnsafeBufferPointer { levels in
            for b in 0..<count / 256 {
                let block = source + b * 136
                let d = block.half(0)
                let scalesHigh = block.uint16(2)
                var out = destination + b * 256
                for sub in 0..<8 {
                    let low = (block.byte(4 + sub / 2) >> UInt8(4 * (sub % 2))) & 0x0F
                    let high = UInt8(truncatingIfNeeded: scalesHigh >> UInt16(2 * sub)) & 3
                    let dl = d * Float(Int(low | high << 4) - 32)
                    let qs = 8 + 16 * sub
                    for j in 0..<16 {
                        let q = block.byte(qs + j)
                        out[j] = dl * levels[Int(q & 0x0F)]
                        out[j + 16] = dl * levels[Int(q >> 4)]
                    }
                    out += 32
                }
            }
        }
    }
}
