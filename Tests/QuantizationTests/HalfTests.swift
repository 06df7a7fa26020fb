import XCTest

@testable import Quantization

final class HalfTests: XCTestCase {
    /// Every one of the 65536 f16 bit patterns widens to the float numpy gives (NaN payloads kept).
    func testToFloatExhaustive() throws {
        let vectors = try QuantVectors.load()
        let expected = try QuantVectors.floats(vectors.f16ToF32)
        XCTAssertEqual(expected.count, 65536)
        var mismatches = 0
        for bits in 0..<65536 where Half.toFloat(UInt16(bits)).bitPattern != expected[bits].bitPattern {
            if mismatches < 5 { XCTFail("f16 0x\(String(bits, radix: 16)): \(Half.toFloat(UInt16(bits))) vs \(expected[bits])") }
            mismatches += 1
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// Float → f16 on random and edge-case floats, against numpy's `astype(float16)` (bit-exact
    /// except NaN payloads: see below).
    func testFromFloatAgainstNumpy() throws {
        let vectors = try QuantVectors.load()
        let input = try QuantVectors.floats(vectors.f32ToF16.input)
        let expected = try QuantVectors.values(vectors.f32ToF16.output, as: UInt16.self)
        XCTAssertEqual(input.count, vectors.f32ToF16.count)
        XCTAssertEqual(expected.count, input.count)
        var failures: [String] = []
        var nans = 0
        for (x, h) in zip(input, expected) {
            let ours = Half.fromFloat(x)
            if x.isNaN {
                // numpy keeps the top payload bits; ggml (and we) give the canonical quiet NaN.
                nans += 1
                if ours & 0x7FFF != 0x7E00 || ours & 0x8000 != h & 0x8000 { failures.append("NaN 0x\(String(x.bitPattern, radix: 16))") }
            } else if ours != h {
                failures.append("\(x) (0x\(String(x.bitPattern, radix: 16))): 0x\(String(ours, radix: 16)) vs numpy 0x\(String(h, radix: 16))")
            }
        }
        XCTAssertGreaterThan(nans, 0)
        XCTAssertEqual(failures.count, 0, failures.prefix(5).joined(separator: "; "))
    }

    /// Round to nearest, ties to even, checked exhaustively: every finite half round-trips, and
    /// at every midpoint between neighbouring halves the even one wins while one float ulp
    /// either side decides it. Both signs.
    func testFromFloatRoundsToNearestEven() {
        var failures: [String] = []
        func expect(_ x: Float, _ h: UInt16) {
            for (value, bits) in [(x, h), (-x, h | 0x8000)] where Half.fromFloat(value) != bits {
                failures.append("\(value): 0x\(String(Half.fromFloat(value), radix: 16)), expected 0x\(String(bits, radix: 16))")
            }
        }
        for h in UInt16(0)..<0x7C00 {  // non-negative finite halves
            let value = Half.toFloat(h)
            // Above the largest finite half, 65536 is where the next one would be: its midpoint
            // 65520 is the overflow threshold.
            let next: Float = h == 0x7BFF ? 65536 : Half.toFloat(h + 1)
            let midpoint = value + (next - value) / 2  // exact: halves have 11 significant bits
            expect(value, h)
            expect(midpoint, h & 1 == 0 ? h : h + 1)
            expect(midpoint.nextDown, h)
            expect(midpoint.nextUp, h + 1)
        }
        XCTAssertEqual(failures.count, 0, failures.prefix(5).joined(separator: "; "))
    }

    func testFromFloatEdgeCases() {
        XCTAssertEqual(Half.fromFloat(0), 0x0000)
        XCTAssertEqual(Half.fromFloat(-0.0), 0x8000)
        XCTAssertEqual(Half.fromFloat(1), 0x3C00)
        XCTAssertEqual(Half.fromFloat(65504), 0x7BFF)  // largest finite
        XCTAssertEqual(Half.fromFloat(65519.996), 0x7BFF)  // just below the overflow midpoint
        XCTAssertEqual(Half.fromFloat(65520), 0x7C00)  // midpoint to 65536 rounds to even = infinity
        XCTAssertEqual(Half.fromFloat(-1e10), 0xFC00)
        XCTAssertEqual(Half.fromFloat(.infinity), 0x7C00)
        XCTAssertEqual(Half.fromFloat(-.infinity), 0xFC00)
        XCTAssertEqual(Half.fromFloat(.nan) & 0x7E00, 0x7E00)  // quiet NaN
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x3880_0000)), 0x0400)  // 2^-14, smallest normal
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x3380_0000)), 0x0001)  // 2^-24, smallest subnormal
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x3300_0000)), 0x0000)  // 2^-25: tie, to even zero
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x3300_0001)), 0x0001)  // just above the tie
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x33C0_0000)), 0x0002)  // 1.5 * 2^-24: tie, to even 2
        XCTAssertEqual(Half.fromFloat(Float(bitPattern: 0x387F_E000)), 0x0400)  // rounds up into the normals
        XCTAssertEqual(Half.fromFloat(1e-30), 0x0000)
        XCTAssertEqual(Half.fromFloat(-1e-30), 0x8000)
        XCTAssertEqual(Half.fromFloat(1.00048828125), 0x3C00)  // 1 + 2^-11: tie, to even 1
        XCTAssertEqual(Half.fromFloat(1.00146484375), 0x3C02)  // 1 + 3 * 2^-11: tie, to even
    }

    #if !(os(macOS) && arch(x86_64))
    /// Where the platform has `Float16`, agree with its conversions too.
    func testAgreesWithFloat16() {
        var failures: [String] = []
        for bits in 0..<65536 {
            let h = Float16(bitPattern: UInt16(bits))
            // NaN payload handling of Float(Float16) is platform-specific; numpy's is tested above.
            if !h.isNaN && Half.toFloat(UInt16(bits)) != Float(h) { failures.append("f16 0x\(String(bits, radix: 16))") }
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<200_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let x = Float(bitPattern: UInt32(truncatingIfNeeded: state >> 32))
            if !x.isNaN && Half.fromFloat(x) != Float16(x).bitPattern { failures.append("\(x)") }
        }
        XCTAssertEqual(failures.count, 0, failures.prefix(5).joined(separator: "; "))
    }
    #endif

    func testBFloat16() {
        XCTAssertEqual(Half.floatToBF16(1), 0x3F80)
        XCTAssertEqual(Half.floatToBF16(Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie, to even
        XCTAssertEqual(Half.floatToBF16(Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie, to even
        XCTAssertEqual(Half.floatToBF16(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(Half.floatToBF16(Float(bitPattern: 0x7F80_0001)), 0x7FC0)  // signalling NaN made quiet
        XCTAssertEqual(Half.bf16ToFloat(0xC040), -3)
    }
}
