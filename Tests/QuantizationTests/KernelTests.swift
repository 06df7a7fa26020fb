import CKernels
import Foundation
import Quantization
import XCTest

/// The dispatched (SIMD) kernels against their scalar reference and against f32 arithmetic on
/// the dequantized operands.
final class KernelTests: XCTestCase {
    static let fastTypes: [GGMLType] = [
        .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .iq4_nl, .mxfp4, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs,
        .iq2_xxs, .iq2_xs, .iq3_xxs, .iq3_s,
    ]

    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func gaussian() -> Float {
            let u1 = Float(next() % 1_000_000 + 1) / 1_000_001, u2 = Float(next() % 1_000_000) / 1_000_000
            return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
        }
    }

    /// Random weight rows of `type`: quantized from Gaussians where we can quantize, otherwise
    /// random bytes with finite scales (the dequantizer defines their meaning).
    func randomRows(_ type: GGMLType, rows: Int, columns: Int, rng: inout Rng) throws -> [UInt8] {
        let rowBytes = type.traits.byteCount(elements: columns)!
        var bytes = [UInt8](repeating: 0, count: rows * rowBytes)
        if type.traits.quantize != nil {
            var floats = [Float](repeating: 0, count: columns)
            for r in 0..<rows {
                for i in 0..<columns { floats[i] = rng.gaussian() * 0.1 }
                try bytes.withUnsafeMutableBytes { raw in
                    try type.quantize(floats, into: raw.baseAddress! + r * rowBytes, count: columns)
                }
            }
        } else {
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Make every f16 scale finite and modest: rewrite the blocks' scale fields.
            let block = type.traits.bytesPerBlock
            for b in 0..<(bytes.count / block) {
                let o = b * block
                switch type {
                case .iq4_xs: bytes[o] = UInt8(truncatingIfNeeded: rng.next()); bytes[o + 1] = 0x1C  // d ~ 2^-8
                case .mxfp4: bytes[o] = UInt8(118 + rng.next() % 8)  // 2^-10 .. 2^-3
                default: bytes[o] = UInt8(truncatingIfNeeded: rng.next()); bytes[o + 1] = 0x1C
                }
            }
        }
        return bytes
    }

    /// Every hand-written level this CPU can run (VNNI, AVX2, portable), each checked.
    func forEachKernelLevel(_ body: (Int32) throws -> Void) rethrows {
        let top = moe_kernel_level()
        defer { moe_force_kernel_level(-1) }
        for level in stride(from: top, through: 0, by: -1) {
            moe_force_kernel_level(level)
            XCTAssertEqual(moe_kernel_level(), level)
            try body(level)
        }
    }

    func testFastKernelsMatchScalarReferenceAndDequantizedArithmetic() throws {
        try forEachKernelLevel { _ in try checkFastKernels() }
    }

    func testBatchedMatmulEqualsRepeatedMatvecAtEveryLevel() throws {
        try forEachKernelLevel { _ in try checkBatchedMatmul() }
    }

    func checkFastKernels() throws {
        var rng = Rng(state: 7)
        for type in Self.fastTypes {
            let columns = type.traits.blockSize == 256 ? 512 : 96
            let rows = 9
            let weights = try randomRows(type, rows: rows, columns: columns, rng: &rng)
            let x = (0..<columns).map { _ in rng.gaussian() }
            let rowBytes = type.traits.byteCount(elements: columns)!
            var q = [Int8](repeating: 0, count: columns), d = [Float](repeating: 0, count: columns / 32), s16 = [Float](repeating: 0, count: columns / 16)
            moe_quantize_activations(x, Int32(columns), &q, &d, &s16)
            var fast = [Float](repeating: 0, count: rows), reference = [Float](repeating: 0, count: rows)
            XCTAssertEqual(moe_matvec_q(Int32(type.rawValue), Int32(columns), weights, rowBytes, 0, Int32(rows), q, d, s16, &fast), 0)
            XCTAssertEqual(moe_matvec_q_reference(Int32(type.rawValue), Int32(columns), weights, rowBytes, 0, Int32(rows), q, d, s16, &reference), 0)
            // The activation the kernels see, dequantized.
            let xq = (0..<columns).map { Float(q[$0]) * d[$0 / 32] }
            // 8-bit activations: each product's activation is off by at most half a step.
            try checkRows(type, weights, rows: rows, columns: columns, x: x, xq: xq, fast: fast, reference: reference,
                          label: "", unquantizedTolerance: 1e-2)
        }
    }

    /// Each row's kernel result against the scalar reference, against f64 arithmetic on the same
    /// (quantized) activations `xq`, and against the unquantized activations `x`.
    func checkRows(_ type: GGMLType, _ weights: [UInt8], rows: Int, columns: Int, x: [Float], xq: [Float], fast: [Float],
                   reference: [Float], label: String, unquantizedTolerance: Float) throws {
        let rowBytes = type.traits.byteCount(elements: columns)!
        var row = [Float](repeating: 0, count: columns)
        for r in 0..<rows {
            try weights.withUnsafeBytes { raw in try type.dequantize(raw.baseAddress! + r * rowBytes, into: &row, count: columns) }
            var exactOnQuantized: Double = 0, exact: Double = 0, magnitude: Double = 0
            for i in 0..<columns {
                exactOnQuantized += Double(row[i]) * Double(xq[i])
                exact += Double(row[i]) * Double(x[i])
                magnitude += abs(Double(row[i]) * Double(x[i]))
            }
            let scale = Float(max(magnitude, 1e-6))
            XCTAssertEqual(fast[r], reference[r], accuracy: 1e-5 * scale, "\(type) row \(r): \(label)SIMD vs scalar reference")
            XCTAssertEqual(fast[r], Float(exactOnQuantized), accuracy: 1e-5 * scale, "\(type) row \(r): \(label)vs f64 on the same operands")
            XCTAssertEqual(fast[r], Float(exact), accuracy: unquantizedTolerance * scale, "\(type) row \(r): \(label)vs unquantized activations")
        }
    }

    /// The q8_K path (K-quants and IQ4_XS at the SIMD levels): the kernel `Kernels.matmul` picks
    /// against its own scalar reference and against f64 arithmetic on the same operands.
    func checkQ8KKernels() throws {
        var rng = Rng(state: 13)
        for type in Self.fastTypes where type.traits.blockSize == 256 {
            let columns = 768, rows = 7
            let weights = try randomRows(type, rows: rows, columns: columns, rng: &rng)
            let rowBytes = type.traits.byteCount(elements: columns)!
            let x = (0..<columns).map { i in rng.gaussian() * (i % 61 == 0 ? 4 : 1) }
            var q = [Int8](repeating: 0, count: columns), d = [Float](repeating: 0, count: columns / 256)
            var bsums = [Int16](repeating: 0, count: columns / 16), sums = [Float](repeating: 0, count: columns / 16)
            moe_quantize_activations_k(x, Int32(columns), &q, &d, &bsums, &sums)
            for g in 0..<(columns / 16) { XCTAssertEqual(Int(bsums[g]), (0..<16).reduce(0) { $0 + Int(q[16 * g + $1]) }) }
            let batch = ActivationBatch(width: columns, capacity: 1)
            batch.reset(tokens: 1)
            for i in 0..<columns { batch.values[i] = x[i] }
            batch.quantize()
            var fast = [Float](repeating: 0, count: rows), reference = fast
            var scratch = [Float](repeating: 0, count: columns)
            let w = try weights.withUnsafeBytes { try WeightMatrix(type: type, base: $0.baseAddress!, rows: rows, columns: columns) }
            try weights.withUnsafeBytes { _ in
                try Kernels.matmul(w, rows: 0..<rows, input: batch, output: &fast, ldy: rows, path: .fast, scratch: &scratch)
            }
            let format = moe_kernel_format(Int32(type.rawValue))
            guard format == 2 else { continue }  // portable level: the 32-block path, checked above
            XCTAssertEqual(moe_matvec_qk_reference(Int32(type.rawValue), Int32(columns), weights, rowBytes, 0, Int32(rows), q, d, bsums, &reference), 0)
            let xq = (0..<columns).map { Float(q[$0]) * d[$0 / 256] }
            try checkRows(type, weights, rows: rows, columns: columns, x: x, xq: xq, fast: fast, reference: reference,
                          label: "q8_K ", unquantizedTolerance: 2e-2)
        }
    }

    /// A prefill batch through `Kernels.matmul` (at the VNNI level, Q3_K and IQ4_XS take the
    /// tiled GEMM in 16-token tiles) against the scalar reference, token by token: 36 tokens
    /// (two tiles, 4 left for the row kernels), 39 (two tiles and a 256-bit one padded from 7)
    /// and 45 (two tiles and a 512-bit one padded from 13); 11 rows (a full band of 8 and a
    /// short one).
    func checkPrefillBatchAgainstReference() throws {
        var rng = Rng(state: 17)
        for type in Self.fastTypes where type.traits.blockSize == 256 {
          for tokens in [36, 39, 45] {
            let columns = 768, rows = 11
            let weights = try randomRows(type, rows: rows, columns: columns, rng: &rng)
            let rowBytes = type.traits.byteCount(elements: columns)!
            let x = (0..<(columns * tokens)).map { i in rng.gaussian() * (i % 61 == 0 ? 4 : 1) }
            let batch = ActivationBatch(width: columns, capacity: tokens)
            batch.reset(tokens: tokens)
            for i in 0..<(columns * tokens) { batch.values[i] = x[i] }
            batch.quantize()
            let w = try weights.withUnsafeBytes { try WeightMatrix(type: type, base: $0.baseAddress!, rows: rows, columns: columns) }
            var together = [Float](repeating: 0, count: tokens * rows)
            var scratch = [Float](repeating: 0, count: columns)
            try Kernels.matmul(w, rows: 0..<rows, input: batch, output: &together, ldy: rows, path: .fast, scratch: &scratch)
            guard moe_kernel_format(Int32(type.rawValue)) == 2 else { continue }
            for t in 0..<tokens {
                let xt = Array(x[(t * columns)..<((t + 1) * columns)])
                var q = [Int8](repeating: 0, count: columns), d = [Float](repeating: 0, count: columns / 256)
                var bsums = [Int16](repeating: 0, count: columns / 16), sums = [Float](repeating: 0, count: columns / 16)
                moe_quantize_activations_k(xt, Int32(columns), &q, &d, &bsums, &sums)
                var reference = [Float](repeating: 0, count: rows)
                XCTAssertEqual(moe_matvec_qk_reference(Int32(type.rawValue), Int32(columns), weights, rowBytes, 0, Int32(rows), q, d, bsums, &reference), 0)
                let xq = (0..<columns).map { Float(q[$0]) * d[$0 / 256] }
                try checkRows(type, weights, rows: rows, columns: columns, x: xt, xq: xq,
                              fast: Array(together[(t * rows)..<((t + 1) * rows)]), reference: reference,
                              label: "batch of \(tokens), token \(t) ", unquantizedTolerance: 2e-2)
            }
          }
        }
    }

    func testPrefillBatchMatchesScalarReferenceAtEveryLevel() throws {
        try forEachKernelLevel { _ in try checkPrefillBatchAgainstReference() }
    }

    func testQ8KKernelsMatchScalarReferenceAtEveryLevel() throws {
        try forEachKernelLevel { _ in try checkQ8KKernels() }
    }

    func checkBatchedMatmul() throws {
        var rng = Rng(state: 11)
        // 256 columns, 70 tokens: several token tiles and row blocks (and, for Q3_K and IQ4_XS at
        // the VNNI level, four 16-token tiles of the tiled GEMM with a short band of 5 rows, and a
        // 256-bit fifth padded from 6 tokens); 5632 columns (an FFN's down projection), 20 tokens:
        // the halved tile Q4_K and Q5_K take for wide rows, one GEMM tile plus 4 tokens for the row kernels.
        for (type, columns, tokens) in Self.fastTypes.flatMap({ [($0, 256, 70), ($0, 5632, 20)] }) {
            let rows = 5
            let weights = try randomRows(type, rows: rows, columns: columns, rng: &rng)
            let rowBytes = type.traits.byteCount(elements: columns)!
            let batch = ActivationBatch(width: columns, capacity: tokens)
            batch.reset(tokens: tokens)
            for i in 0..<(tokens * columns) { batch.values[i] = rng.gaussian() }
            batch.quantize()
            let w = try weights.withUnsafeBytes { try WeightMatrix(type: type, base: $0.baseAddress!, rows: rows, columns: columns) }
            var together = [Float](repeating: 0, count: tokens * rows)
            var scratch = [Float](repeating: 0, count: columns)
            try weights.withUnsafeBytes { _ in
                try Kernels.matmul(w, rows: 0..<rows, input: batch, output: &together, ldy: rows, path: .fast, scratch: &scratch)
            }
            for t in 0..<tokens {
                var one = [Float](repeating: 0, count: rows)
                try Kernels.matmul(w, rows: 0..<rows, input: batch, tokens: t..<(t + 1), output: &one, ldy: rows, path: .fast, scratch: &scratch)
                XCTAssertEqual(one, Array(together[(t * rows)..<((t + 1) * rows)]), "\(type) token \(t)")
            }
            _ = rowBytes
        }
    }

    func testFloatKernelsMatchReference() throws {
        var rng = Rng(state: 3)
        for type in [GGMLType.f32, .f16, .bf16] {
            let columns = 77, rows = 6  // not a multiple of the vector width
            var floats = (0..<(rows * columns)).map { _ in rng.gaussian() }
            let rowBytes = type.traits.byteCount(elements: columns)!
            var bytes = [UInt8](repeating: 0, count: rows * rowBytes)
            try bytes.withUnsafeMutableBytes { raw in try type.quantize(&floats, into: raw.baseAddress!, count: rows * columns) }
            let batch = ActivationBatch(width: columns, capacity: 2)
            batch.reset(tokens: 2)
            for i in 0..<(2 * columns) { batch.values[i] = rng.gaussian() }
            var fast = [Float](repeating: 0, count: 2 * rows), reference = fast
            var scratch = [Float](repeating: 0, count: columns)
            try bytes.withUnsafeBytes { raw in
                let w = try WeightMatrix(type: type, base: raw.baseAddress!, rows: rows, columns: columns)
                try Kernels.matmul(w, rows: 0..<rows, input: batch, output: &fast, ldy: rows, path: .fast, scratch: &scratch)
                try Kernels.matmul(w, rows: 0..<rows, input: batch, output: &reference, ldy: rows, path: .reference, scratch: &scratch)
            }
            for i in fast.indices { XCTAssertEqual(fast[i], reference[i], accuracy: 1e-5 * max(1, abs(reference[i])), "\(type) \(i)") }
        }
    }

    func testHalfConversionKernelRoundsLikeHalfFromFloat() {
        var rng = Rng(state: 5)
        let values = (0..<4096).map { _ in rng.gaussian() * Float(1 << (rng.next() % 20)) / 1024 } + [0, -0, 65504, 65520, 1e-8, -6.1e-5, .infinity]
        var halves = [UInt16](repeating: 0, count: values.count)
        Kernels.toHalf(values, &halves, count: values.count)
        for (v, h) in zip(values, halves) { XCTAssertEqual(h, Half.fromFloat(v), "\(v)") }
    }

    func testKernelISAIsReported() {
        XCTAssertTrue(["x86-64-v4", "x86-64-v3", "arm64-i8mm", "arm64-dotprod", "arm64-neon", "baseline"].contains(Kernels.isa))
    }
}
