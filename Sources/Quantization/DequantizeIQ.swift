import CKernels

/// Dequantizers of the grid ("i-quant") types IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S.
///
/// Each group of 8 (IQ2) or 4 (IQ3) weights is an index into a fixed table of magnitudes, the
/// grid; signs and a 4-bit scale per 16 or 32 weights come with it. The grids are format data;
/// they live once, in C (`Sources/CKernels/iq_grids.h`, generated from gguf-py by
/// `tools/make_iq_grids.py`), and the C kernels and these dequantizers read the same bytes.
/// Arithmetic follows gguf.quants and llama.cpp's `dequantize_row_iq*`: `db = d * (0.5 + s) *
/// 0.25` (IQ2), `d * (0.5 + s) * 0.5` (IQ3_XXS) or `d * (1 + 2s)` (IQ3_S), then `db * grid *
/// sign` — every product is exact in Float, so any order gives the same bits.
///
/// This runtime reads these types (GGUFs quantized by llama.cpp) but does not write them: they
/// have no quantizer here (their search needs an importance matrix and llama.cpp's lattice
/// search), so `moe convert` refuses them as a target type.
extension Dequantize {
    /// Grid `type` as bytes: entry i at `width * i`.
    @inline(__always) static func iqGrid(_ type: GGMLType) -> UnsafePointer<UInt8> {
        moe_iq_grid(Int32(type.rawValue))!
    }

    /// Eight weights: magnitudes `first[0..<4]` then `second[0..<4]` (one 8-wide entry when
    /// `second` is `first + 4`), negated where `signs` has bit j set.
    @inline(__always) static func iqEight(
        _ out: UnsafeMutablePointer<Float>, _ db: Float, _ first: UnsafePointer<UInt8>, _ second: UnsafePointer<UInt8>, _ signs: UInt8
    ) {
        for j in 0..<8 {
            let v = db * Float(j < 4 ? first[j] : second[j - 4])
            out[j] = signs & (1 << UInt8(j)) != 0 ? -v : v
        }
    }

    /// Walks the super-blocks of `bytes` bytes (f16 d first): `group(block, d, i)` gives group i's
    /// (i < 32, 8 weights) scale, its two runs of 4 grid magnitudes and its 8 sign bits.
    @inline(__always) static func iqBlocks(
        _ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, _ count: Int, bytes: Int,
        _ group: (UnsafeRawPointer, Float, Int) -> (Float, UnsafePointer<UInt8>, UnsafePointer<UInt8>, UInt8)
    ) {
        for b in 0..<count / 256 {
            let block = source + b * bytes
            let d = block.half(0)
            for i in 0..<32 {
                let (db, first, second, signs) = group(block, d, i)
                iqEight(destination + 256 * b + 8 * i, db, first, second, signs)
            }
        }
    }

    /// ### Layout (66 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | 8 x ( idx: u32 | aux: u32 ) |
    ///
    ///     idx byte l (l < 4): grid index of elements 8l..8l+7 (iq2xxs_grid, 8 magnitudes 8/25/43)
    ///     aux bits 7l..7l+6: sign index of those 8 (ksigns: 7 bits + parity); aux >> 28: scale s
    ///     x = d * (0.5 + s) * 0.25 * grid * sign
    public static let iq2_xxs: DequantizeRow = { source, destination, count in
        let grid = iqGrid(.iq2_xxs), ksigns = moe_iq_sign_table()!
        iqBlocks(source, destination, count, bytes: 66) { block, d, i in
            let (ib, l) = (i / 4, i % 4)
            let aux = block.uint32(6 + 8 * ib)
            let g = grid + 8 * Int(block.byte(2 + 8 * ib + l))
            return (d * (0.5 + Float(aux >> 28)) * 0.25, g, g + 4, ksigns[Int((aux >> UInt32(7 * l)) & 127)])
        }
    }

    /// ### Layout (74 bytes, 256 elements; 16 sub-blocks of 16)
    ///
    ///     | d: f16 | qs: 32 x u16 | scales: 8 bytes |
    ///
    ///     qs[i] (i < 32): bits 0-8 grid index of elements 8i..8i+7 (iq2xs_grid), bits 9-15 their
    ///                     sign index (ksigns)
    ///     scales[j]: low nibble s for elements 32j..32j+15, high nibble for 32j+16..32j+31
    ///     x = d * (0.5 + s) * 0.25 * grid * sign
    public static let iq2_xs: DequantizeRow = { source, destination, count in
        let grid = iqGrid(.iq2_xs), ksigns = moe_iq_sign_table()!
        iqBlocks(source, destination, count, bytes: 74) { block, d, i in
            let scales = block.byte(66 + i / 4)
            let s = i % 4 < 2 ? scales & 0x0F : scales >> 4
            let v = block.uint16(2 + 2 * i)
            let g = grid + 8 * Int(v & 511)
            return (d * (0.5 + Float(s)) * 0.25, g, g + 4, ksigns[Int(v >> 9)])
        }
    }

    /// ### Layout (98 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | qs: 64 bytes | aux: 8 x u32 |
    ///
    ///     qs[k] (k < 64): grid index of elements 4k..4k+3 (iq3xxs_grid, 4 magnitudes)
    ///     aux[j] bits 7l..7l+6: sign index of elements 32j + 8l.. (ksigns); aux[j] >> 28: scale s
    ///     x = d * (0.5 + s) * 0.5 * grid * sign
    public static let iq3_xxs: DequantizeRow = { source, destination, count in
        let grid = iqGrid(.iq3_xxs), ksigns = moe_iq_sign_table()!
        iqBlocks(source, destination, count, bytes: 98) { block, d, i in
            let aux = block.uint32(66 + 4 * (i / 4))
            let first = grid + 4 * Int(block.byte(2 + 2 * i)), second = grid + 4 * Int(block.byte(3 + 2 * i))
            return (d * (0.5 + Float(aux >> 28)) * 0.5, first, second, ksigns[Int((aux >> UInt32(7 * (i % 4))) & 127)])
        }
    }

    /// ### Layout (110 bytes, 256 elements; 8 sub-blocks of 32)
    ///
    ///     | d: f16 | qs: 64 bytes | qh: 8 bytes | signs: 32 bytes | scales: 4 bytes |
    ///
    ///     grid index of elements 4k..4k+3 (k < 64) = qs[k] | (bit k % 8 of qh[k / 8]) << 8 (iq3s_grid)
    ///     signs: bit j of byte i negates element 8i + j
    ///     scales[j / 2]: low nibble s for sub-block j even, high nibble for j odd
    ///     x = d * (1 + 2s) * grid * sign
    public static let iq3_s: DequantizeRow = { source, destination, count in
        let grid = iqGrid(.iq3_s)
        iqBlocks(source, destination, count, bytes: 110) { block, d, i in
            let ib = i / 4
            let s = (block.byte(106 + ib / 2) >> UInt8(4 * (ib % 2))) & 0x0F
            let qh = Int(block.byte(66 + ib)), k = 2 * (i % 4)
            let first = grid + 4 * (Int(block.byte(2 + 2 * i)) | ((qh >> k) & 1) << 8)
            let second = grid + 4 * (Int(block.byte(3 + 2 * i)) | ((qh >> (k + 1)) & 1) << 8)
            return (d * Float(1 + 2 * Int(s)), first, second, block.byte(74 + i))
        }
    }
}
