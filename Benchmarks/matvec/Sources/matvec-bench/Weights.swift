import SwiftMoE

/// A seeded SplitMix64: the same seed gives the same weights on every run and machine.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    mutating func nextFloat() -> Float {
        Float(next() >> 40) * (2.0 / Float(1 << 24)) - 1
    }
}

/// A row-major weight matrix of one GGML type, owned by the benchmark.
final class WeightMatrix {
    let type: GGMLType
    let rows: Int
    let columns: Int
    let rowBytes: Int
    let bytes: UnsafeMutableRawPointer
    /// How the bytes were made: "quantized" (from random floats) or "random blocks".
    let origin: String

    var byteCount: Int { rows * rowBytes }

    init(type: GGMLType, columns: Int, targetBytes: Int, seed: UInt64, randomBlocks: Bool = false) {
        let rowBytes = type.traits.byteCount(elements: columns)!
        self.type = type
        self.columns = columns
        self.rowBytes = rowBytes
        self.rows = max(1, targetBytes / rowBytes)
        bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
        var rng = SplitMix64(seed: seed ^ UInt64(type.rawValue))
        origin = fillWeights(
            type: type, bytes: bytes, rows: rows, columns: columns, rowBytes: rowBytes, randomBlocks: randomBlocks, rng: &rng)
    }

    deinit { bytes.deallocate() }
}

/// Fills `rows` rows of `type` weights with valid blocks.
///
/// Quantizes random floats where a quantizer is at hand; otherwise writes random bytes and
/// then puts finite, normal scales (d, dmin, ...) where each block layout keeps them, so no
/// kernel meets NaN, infinity or subnormal numbers. `randomBlocks` takes that path for every
/// block type (plain float types are always converted from random floats).
func fillWeights(
    type: GGMLType, bytes: UnsafeMutableRawPointer, rows: Int, columns: Int, rowBytes: Int, randomBlocks: Bool,
    rng: inout SplitMix64
) -> String {
    let randomBlocks = randomBlocks && type.traits.blockSize > 1
    let floats = UnsafeMutablePointer<Float>.allocate(capacity: columns)
    defer { floats.deallocate() }

    #if true  // the library quantizes every type it can (GGMLType.quantize)
        // Once the library has quantizers (`GGMLType.quantize`), build with
        // `-Xswiftc -DSWIFTMOE_HAS_QUANTIZE` to use them for every type they cover.
        if !randomBlocks, type.traits.quantize != nil {
            var quantized = true
            for r in 0..<rows where quantized {
                for i in 0..<columns { floats[i] = rng.nextFloat() }
                quantized = (try? type.quantize(floats, into: bytes + r * rowBytes, count: columns)) != nil
            }
            if quantized { return "quantized" }
        }
    #endif

    if !randomBlocks, let quantizeRow = localQuantizer(type) {
        for r in 0..<rows {
            for i in 0..<columns { floats[i] = rng.nextFloat() }
            quantizeRow(floats, bytes + r * rowBytes, columns)
        }
        return type.traits.blockSize == 1 ? "converted" : "quantized"
    }

    // Random blocks with valid scales.
    let words = (rows * rowBytes) / 8
    let w = bytes.bindMemory(to: UInt64.self, capacity: words)
    for i in 0..<words { w[i] = rng.next() }
    for i in (words * 8)..<(rows * rowBytes) { bytes.storeBytes(of: UInt8(truncatingIfNeeded: rng.next()), toByteOffset: i, as: UInt8.self) }
    let fields = scaleFields(type)
    let blockBytes = type.traits.bytesPerBlock
    let blocks = rows * rowBytes / blockBytes
    for b in 0..<blocks {
        let block = bytes + b * blockBytes
        for field in fields {
            // Scales of order 0.01, like real weights; never zero, NaN or subnormal.
            let scale = 0.005 + 0.01 * abs(rng.nextFloat())
            switch field.kind {
            case .f16: block.storeBytes(of: Half.fromFloat(scale), toByteOffset: field.offset, as: UInt16.self)
            case .f32: block.storeBytes(of: scale, toByteOffset: field.offset, as: Float.self)
            case .e8m0: block.storeBytes(of: UInt8(120 + rng.next() % 8), toByteOffset: field.offset, as: UInt8.self)
            }
        }
    }
    return fields.isEmpty ? "random bytes" : "random blocks"
}

/// Where a block keeps its floating-point scales (ggml-common.h).
struct ScaleField {
    enum Kind { case f16, f32, e8m0 }
    let offset: Int
    let kind: Kind
}

func scaleFields(_ type: GGMLType) -> [ScaleField] {
    switch type {
    case .q4_0, .q5_0, .q8_0, .iq4_nl, .iq4_xs, .iq2_xxs, .iq2_xs, .iq2_s, .iq3_xxs, .iq3_s, .iq1_s:
        return [.init(offset: 0, kind: .f16)]
    case .q4_1, .q5_1, .q8_1, .q4_K, .q5_K:
        return [.init(offset: 0, kind: .f16), .init(offset: 2, kind: .f16)]  // d, m / dmin / s
    case .q2_K: return [.init(offset: 80, kind: .f16), .init(offset: 82, kind: .f16)]
    case .q3_K: return [.init(offset: 108, kind: .f16)]
    case .q6_K: return [.init(offset: 208, kind: .f16)]
    case .q8_K: return [.init(offset: 0, kind: .f32)]
    case .tq1_0: return [.init(offset: 52, kind: .f16)]
    case .tq2_0: return [.init(offset: 64, kind: .f16)]
    case .mxfp4: return [.init(offset: 0, kind: .e8m0)]
    default: return []  // iq1_m packs its scale into `scales`; plain types need none
    }
}

typealias QuantizeRowLocal = (_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, _ count: Int) -> Void

/// Quantizers the benchmark carries itself until the library has them (ggml's reference
/// rounding for Q8_0 and Q4_0; exact bit patterns do not matter for speed, validity does).
func localQuantizer(_ type: GGMLType) -> QuantizeRowLocal? {
    switch type {
    case .f32:
        return { src, dst, n in for i in 0..<n { dst.storeBytes(of: src[i], toByteOffset: 4 * i, as: Float.self) } }
    case .f16:
        return { src, dst, n in for i in 0..<n { dst.storeBytes(of: Half.fromFloat(src[i]), toByteOffset: 2 * i, as: UInt16.self) } }
    case .bf16:
        return { src, dst, n in for i in 0..<n { dst.storeBytes(of: Half.floatToBF16(src[i]), toByteOffset: 2 * i, as: UInt16.self) } }
    case .q8_0:
        return { src, dst, n in
            for b in 0..<(n / 32) {
                let x = src + 32 * b
                var amax: Float = 0
                for j in 0..<32 { amax = max(amax, abs(x[j])) }
                let d = amax / 127
                let id: Float = d != 0 ? 1 / d : 0
                let block = dst + 34 * b
                block.storeBytes(of: Half.fromFloat(d), as: UInt16.self)
                for j in 0..<32 { block.storeBytes(of: Int8((x[j] * id).rounded()), toByteOffset: 2 + j, as: Int8.self) }
            }
        }
    case .q4_0:
        return { src, dst, n in
            for b in 0..<(n / 32) {
                let x = src + 32 * b
                var amax: Float = 0, signedMax: Float = 0
                for j in 0..<32 where abs(x[j]) > amax { amax = abs(x[j]); signedMax = x[j] }
                let d = signedMax / -8
                let id: Float = d != 0 ? 1 / d : 0
                let block = dst + 18 * b
                block.storeBytes(of: Half.fromFloat(d), as: UInt16.self)
                for j in 0..<16 {
                    let lo = UInt8(min(15, Int8(x[j] * id + 8.5)))
                    let hi = UInt8(min(15, Int8(x[j + 16] * id + 8.5)))
                    block.storeBytes(of: lo | (hi << 4), toByteOffset: 2 + j, as: UInt8.self)
                }
            }
        }
    default:
        return nil
    }
}
