import CKernels
@testable import Quantization
import XCTest

/// The 8-bit activation quantizers against llama.cpp's reference definition
/// (`quantize_row_q8_0_ref` / `quantize_row_q8_K_ref`: scale = max|x| / 127, values rounded
/// half away from zero, `roundf`), written here with Swift's `rounded()`, including values that
/// fall exactly halfway; and `ActivationBatch`'s split quantization against the whole batch.
final class ActivationQuantizationTests: XCTestCase {
    /// Block values: random, exact halves (a block whose max is 127 has scale 1, so x is
    /// x * inverse), zeros, and a block of all zeros.
    func sample(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 250_000
        }
        var x = (0..<n).map { _ in next() }
        // Block 1 (32-blocks) / the first 64 of super-block 0: max 127, halves and their negatives.
        for i in 32..<64 { x[i] = (Float(i - 32) - 15.5) * (i % 3 == 0 ? -1 : 1) }
        x[40] = 127
        for i in 64..<96 { x[i] = 0 }  // an all-zero block: scale 0, values 0
        return x
    }

    func reference(_ xb: ArraySlice<Float>) -> (scale: Float, q: [Int]) {
        let amax = xb.reduce(Float(0)) { max($0, abs($1)) }
        let scale = amax / 127
        let inverse: Float = scale != 0 ? 1 / scale : 0
        return (scale, xb.map { Int(($0 * inverse).rounded(.toNearestOrAwayFromZero)) })
    }

    func testBlocksOf32MatchTheReferenceDefinition() {
        let n = 512
        let x = sample(n, seed: 3)
        var q = [Int8](repeating: 0, count: n), d = [Float](repeating: 0, count: n / 32), s16 = [Float](repeating: 0, count: n / 16)
        moe_quantize_activations(x, Int32(n), &q, &d, &s16)
        var halves = 0
        for b in 0..<(n / 32) {
            let (scale, expected) = reference(x[(32 * b)..<(32 * b + 32)])
            XCTAssertEqual(d[b], scale, "block \(b) scale")
            XCTAssertEqual(q[(32 * b)..<(32 * b + 32)].map(Int.init), expected, "block \(b) values")
            XCTAssertEqual(s16[2 * b], scale * Float(expected[0..<16].reduce(0, +)), "block \(b) first sum")
            XCTAssertEqual(s16[2 * b + 1], scale * Float(expected[16..<32].reduce(0, +)), "block \(b) second sum")
            halves += x[(32 * b)..<(32 * b + 32)].filter { ($0 * (scale != 0 ? 1 / scale : 0)).truncatingRemainder(dividingBy: 1).magnitude == 0.5 }.count
        }
        XCTAssertGreaterThanOrEqual(halves, 16, "the sample has exact halves")
    }

    func testSuperBlocksOf256MatchTheReferenceDefinition() {
        let n = 768
        let x = sample(n, seed: 5)
        var q = [Int8](repeating: 0, count: n), d = [Float](repeating: 0, count: n / 256)
        var bsums = [Int16](repeating: 0, count: n / 16), sums = [Float](repeating: 0, count: n / 16)
        moe_quantize_activations_k(x, Int32(n), &q, &d, &bsums, &sums)
        for b in 0..<(n / 256) {
            let (scale, expected) = reference(x[(256 * b)..<(256 * b + 256)])
            XCTAssertEqual(d[b], scale, "super-block \(b) scale")
            XCTAssertEqual(q[(256 * b)..<(256 * b + 256)].map(Int.init), expected, "super-block \(b) values")
            for g in 0..<16 {
                let sum = expected[(16 * g)..<(16 * g + 16)].reduce(0, +)
                XCTAssertEqual(Int(bsums[16 * b + g]), sum)
                XCTAssertEqual(sums[16 * b + g], scale * Float(sum))
            }
        }
    }

    /// Quantizing a batch in token ranges (as the executor does across threads) writes the same
    /// bytes as quantizing it whole, in both forms.
    func testSplitQuantizationEqualsWhole() {
        let width = 512, tokens = 7
        let whole = ActivationBatch(width: width, capacity: tokens), split = ActivationBatch(width: width, capacity: tokens)
        whole.reset(tokens: tokens)
        split.reset(tokens: tokens)
        let x = sample(width * tokens, seed: 11)
        for i in 0..<(width * tokens) {
            whole.values[i] = x[i]
            split.values[i] = x[i]
        }
        whole.quantize()
        for range in [0..<3, 3..<4, 4..<7] { split.quantize(tokens: range) }
        XCTAssertFalse(split.isQuantized)
        split.markQuantized()
        XCTAssertTrue(split.isQuantized)
        for t in [0, 3, 6] {
            let a = whole.activations(from: t), b = split.activations(from: t)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: a.q, count: width)), Array(UnsafeBufferPointer(start: b.q, count: width)))
            XCTAssertEqual(Array(UnsafeBufferPointer(start: a.d, count: width / 32)), Array(UnsafeBufferPointer(start: b.d, count: width / 32)))
            XCTAssertEqual(Array(UnsafeBufferPointer(start: a.qk, count: width)), Array(UnsafeBufferPointer(start: b.qk, count: width)))
            XCTAssertEqual(Array(UnsafeBufferPointer(start: a.bsums, count: width / 16)),
                           Array(UnsafeBufferPointer(start: b.bsums, count: width / 16)))
        }
    }
}
