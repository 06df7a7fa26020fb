/// Importance-weighted (activation-aware) quantizers of the K-quant types: what
/// `llama-quantize --imatrix` runs.
///
/// Ports of `quantize_row_q{2,3,4,5,6}_K_impl` from llama.cpp's `ggml-quants.c` with their
/// helpers (`make_qkx3_quants`, `make_qp_quants`, `make_qx_quants` with weights), in the same
/// float evaluation order as ``Quantize``'s reference ports, so the bytes equal what
/// `ggml_quantize_chunk(type, …, imatrix)` writes (Tests/Fixtures/quant/imatrix, made by
/// tools/make_imatrix_vectors.py through ggml itself).
///
/// `importance` holds one non-negative weight per column of a row (llama.cpp's imatrix entry
/// for the tensor: the mean square of each input the matrix multiplies, over the calibration
/// tokens). Block `b` of a row uses `importance[256 b ..< 256 b + 256]`. Each scale is chosen
/// to minimise the quantization error weighted by `importance[i] · sqrt(σ² + x[i]²)` instead of
/// the reference's `|x|`-based weights, so columns that see large activations are quantized
/// more precisely.
extension Quantize {
    /// One row (`count` elements, whole blocks) with `importance[count]`.
    public typealias WeightedRow = @Sendable (
        _ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int, _ importance: UnsafePointer<Float>
    ) -> Void

    /// The weighted quantizer of `type`, if llama.cpp defines one this runtime ports.
    /// (llama.cpp's q8_0 ignores the imatrix; its q4_0…q5_1 use it, but this runtime does not
    /// weight them: they use the reference encoding. IQ4_NL and IQ4_XS: QuantizeIQ4.swift.)
    public static func weighted(_ type: GGMLType) -> WeightedRow? {
        switch type {
        case .q2_K: return q2KWeighted
        case .q3_K: return q3KWeighted
        case .q4_K: return { x, y, n, w in scaleMinKWeighted(x, y, n, w, nmax: 15, bytesPerBlock: 144) }
        case .q5_K: return { x, y, n, w in scaleMinKWeighted(x, y, n, w, nmax: 31, bytesPerBlock: 176) }
        case .q6_K: return { x, y, n, w in q6KBlocks(x, y, n, importance: w) }
        case .iq4_nl: return { x, y, n, w in iq4Blocks(x, y, n, importance: w, superBlock: 32) }
        case .iq4_xs: return { x, y, n, w in iq4Blocks(x, y, n, importance: w, superBlock: 256) }
        default: return nil
        }
    }

    static let q2KWeighted: WeightedRow = { source, destination, count, importance in
        withScratch { s in
            let ls = s.bytes, lm = s.bytes + 16
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 84
                var sumX2: Float = 0
                for j in 0..<256 { sumX2 += x[j] * x[j] }
                let sigma2 = sumX2 / 256
                var sw = [Float](repeating: 0, count: 16)
                for j in 0..<16 {
                    sw[j] = importanceWeights(x + 16 * j, importance + 256 * b + 16 * j, count: 16, sigma2: sigma2, into: s.weights)
                    s.scales[j] = makeQKX2Quants(
                        count: 16, nmax: 3, x + 16 * j, weights: s.weights, levels: s.levels + 16 * j,
                        min: &s.mins[j], auxiliary: s.auxiliary, rmin: -0.9, rdelta: 0.05, steps: 36, absoluteError: false)
                }
                let dm = sw.withUnsafeBufferPointer { makeQPQuants(count: 16, nmax: 15, s.scales, levels: ls, weights: $0.baseAddress!) }
                let mm = sw.withUnsafeBufferPointer { makeQPQuants(count: 16, nmax: 15, s.mins, levels: lm, weights: $0.baseAddress!) }
                let d = Half.toFloat(block.setHalf(80, dm))
                let dmin = Half.toFloat(block.setHalf(82, mm))
                for j in 0..<16 {
                    let packed = ls[j] | lm[j] << 4
                    block.setByte(j, packed)
                    let scale = d * Float(packed & 0x0F)
                    if scale == 0 { continue }
                    let min = dmin * Float(packed >> 4)
                    for i in 0..<16 {
                        s.levels[16 * j + i] = UInt8(Swift.max(0, Swift.min(3, nearestInt((x[16 * j + i] + min) / scale))))
                    }
                }
                pack2Bit(s.levels, into: block + 16)
            }
        }
    }

    static let q3KWeighted: WeightedRow = { source, destination, count, importance in
        withScratch { s in
            let levels = UnsafeMutableRawPointer(s.levels).assumingMemoryBound(to: Int8.self)
            let ls = UnsafeMutableRawPointer(s.bytes).assumingMemoryBound(to: Int8.self)
            var sw = [Float](repeating: 0, count: 16)
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * 110
                var sumX2: Float = 0
                for j in 0..<256 { sumX2 += x[j] * x[j] }
                let sigma2 = 2 * sumX2 / 256
                for j in 0..<16 {
                    sw[j] = importanceWeights(x + 16 * j, importance + 256 * b + 16 * j, count: 16, sigma2: sigma2, into: s.weights)
                    s.scales[j] = makeQXQuants(count: 16, nmax: 4, x + 16 * j, levels: levels + 16 * j, weights: s.weights)
                }
                let dBlock = sw.withUnsafeBufferPointer { makeQXQuants(count: 16, nmax: 32, s.scales, levels: ls, weights: $0.baseAddress!) }
                let packed = s.bytes + 16
                packed.update(repeating: 0, count: 12)
                for j in 0..<16 {
                    let l = UInt8(bitPattern: ls[j])
                    if j < 8 {
                        packed[j] = l & 0x0F
                    } else {
                        packed[j - 8] |= (l & 0x0F) << 4
                    }
                    packed[j % 4 + 8] |= (l >> 4) << UInt8(2 * (j / 4))
                }
                for j in 0..<12 { block.setByte(96 + j, packed[j]) }
                let d = Half.toFloat(block.setHalf(108, dBlock))
                for j in 0..<16 {
                    let scale = d * Float(Dequantize.q3KScale(UnsafeRawPointer(block + 96), j))
                    if scale == 0 { continue }
                    for i in 0..<16 {
                        levels[16 * j + i] = Int8(Swift.max(-4, Swift.min(3, nearestInt(x[16 * j + i] / scale))) + 4)
                    }
                }
                packQ3KLevels(levels, block: block)
            }
        }
    }

    /// The error weights of one sub-block, `importance[l] · sqrt(σ² + x[l]²)`, into `weights`;
    /// returns their sum (accumulated in order from 0, as the C code does).
    @inline(__always)
    static func importanceWeights(_ x: UnsafePointer<Float>, _ importance: UnsafePointer<Float>, count n: Int, sigma2: Float,
                                  into weights: UnsafeMutablePointer<Float>) -> Float {
        for l in 0..<n { weights[l] = importance[l] * (sigma2 + x[l] * x[l]).squareRoot() }
        var sum: Float = 0
        for l in 0..<n { sum += weights[l] }
        return sum
    }

    /// Q4_K (nmax 15) and Q5_K (nmax 31): sub-block scales and mins from `make_qkx3_quants`,
    /// then 6-bit super-block scales from `make_qp_quants`, both weighted.
    static func scaleMinKWeighted(
        _ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int, _ importance: UnsafePointer<Float>,
        nmax: Int, bytesPerBlock: Int
    ) {
        withScratch { s in
            let ls = s.bytes, lm = s.bytes + 8
            var sw = [Float](repeating: 0, count: 8)
            for b in 0..<count / 256 {
                let x = source + b * 256
                let block = destination + b * bytesPerBlock
                var sumX2: Float = 0
                for l in 0..<256 { sumX2 += x[l] * x[l] }
                let sigma2 = 2 * sumX2 / 256
                for j in 0..<8 {
                    sw[j] = importanceWeights(x + 32 * j, importance + 256 * b + 32 * j, count: 32, sigma2: sigma2, into: s.weights)
                    s.scales[j] = makeQKX2Quants(
                        count: 32, nmax: nmax, x + 32 * j, weights: s.weights, levels: s.levels + 32 * j,
                        min: &s.mins[j], auxiliary: s.auxiliary, rmin: -0.9, rdelta: 0.05, steps: 36, absoluteError: false)
                }
                let dBlock = sw.withUnsafeBufferPointer { makeQPQuants(count: 8, nmax: 63, s.scales, levels: ls, weights: $0.baseAddress!) }
                let mBlock = sw.withUnsafeBufferPointer { makeQPQuants(count: 8, nmax: 63, s.mins, levels: lm, weights: $0.baseAddress!) }
                storeScaleMinK(x, scales: ls, mins: lm, d: dBlock, dmin: mBlock, nmax: nmax, scratch: s, block: block)
                if nmax == 15 { packQ4KLevels(s.levels, block: block) } else { packQ5KLevels(s.levels, block: block, scratch: s) }
            }
        }
    }
}

extension GGMLType {
    /// Quantizes `count` floats (rows of `rowLength`) like ``quantize(_:into:count:)``, but with
    /// per-column `importance` (`rowLength` non-negative weights, the same for every row) where
    /// this type has an importance-weighted quantizer (``Quantize/weighted(_:)``); other types
    /// ignore it, as llama.cpp's do.
    /// - Throws: ``QuantizationError`` as ``quantize(_:into:count:)``, and when `importance` does
    ///   not have `rowLength` entries or `rowLength` does not divide `count` into whole blocks.
    public func quantize(_ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer, count: Int,
                         rowLength: Int, importance: [Float]?) throws {
        guard let importance, let weighted = Quantize.weighted(self) else {
            return try quantize(source, into: destination, count: count)
        }
        let traits = self.traits
        guard rowLength > 0, count % rowLength == 0, importance.count == rowLength,
              let rowBytes = traits.byteCount(elements: rowLength) else {
            throw QuantizationError.partialBlock(self, elements: rowLength)
        }
        importance.withUnsafeBufferPointer { w in
            guard let w = w.baseAddress else { return }
            for r in 0..<count / rowLength {
                weighted(source + r * rowLength, destination + r * rowBytes, rowLength, w)
            }
        }
    }
}
