import XCTest

@testable import Quantization

/// Dequantization against gguf.quants (which llama.cpp's C agrees with on every vector).
final class DequantizeTests: XCTestCase {
    /// Every weight type a GGUF file of the supported families may hold (what users bring).
    static let requiredTypes: [GGMLType] = [
        .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs, .mxfp4,
        .iq2_xxs, .iq2_xs, .iq3_xxs, .iq3_s,
    ]

    func testEveryRequiredTypeHasADequantizer() {
        for type in Self.requiredTypes {
            XCTAssertTrue(type.isComputable, "\(type)")
        }
    }

    func testBitExactAgainstReference() throws {
        let vectors = try QuantVectors.load()
        var covered = Set<GGMLType>()
        for entry in vectors.dequantize {
            let type = try XCTUnwrap(GGMLType(name: entry.type), entry.type)
            let input = try QuantVectors.bytes(entry.input)
            let expected = try QuantVectors.floats(entry.output)
            let count = entry.blocks * type.traits.blockSize
            XCTAssertEqual(input.count, type.traits.byteCount(elements: count), "\(type): input size")
            XCTAssertEqual(expected.count, count, "\(type): output size")
            let actual = try type.dequantized(input, count: count)
            XCTAssertNil(firstBitDifference(actual, expected), "\(type)")
            covered.insert(type)
        }
        for type in GGMLType.allCases where type.isComputable {
            XCTAssertTrue(covered.contains(type), "no reference vectors for \(type)")
        }
    }

    /// Dequantizing block by block at odd addresses gives the same floats as one call over the
    /// whole row (kernels need no alignment and keep no state between blocks).
    func testUnalignedAndBlockwise() throws {
        let vectors = try QuantVectors.load()
        for entry in vectors.dequantize {
            let type = try XCTUnwrap(GGMLType(name: entry.type))
            let traits = type.traits
            let input = try QuantVectors.bytes(entry.input)
            let expected = try QuantVectors.floats(entry.output)
            let shifted = [0x5A] + input  // block b starts at 1 + b * bytesPerBlock
            var actual = [Float](repeating: .nan, count: expected.count)
            try shifted.withUnsafeBytes { source in
                try actual.withUnsafeMutableBufferPointer { out in
                    for b in 0..<expected.count / traits.blockSize {
                        try type.dequantize(
                            source.baseAddress! + 1 + b * traits.bytesPerBlock,
                            into: out.baseAddress! + b * traits.blockSize, count: traits.blockSize)
                    }
                }
            }
            XCTAssertNil(firstBitDifference(actual, expected), "\(type)")
        }
    }

    /// Hand-checked values, independent of the generated vectors.
    func testKnownBlocks() throws {
        // Q4_0, d = 0.5: nibble n → (n - 8) / 2.
        var q4_0 = [UInt8](repeating: 0, count: 18)
        q4_0[0] = 0x00
        q4_0[1] = 0x38  // f16 0.5
        for j in 0..<16 { q4_0[2 + j] = UInt8(j) | UInt8(15 - j) << 4 }
        let x = try GGMLType.q4_0.dequantized(q4_0, count: 32)
        XCTAssertEqual(x[0], -4)
        XCTAssertEqual(x[15], 3.5)
        XCTAssertEqual(x[16], 3.5)
        XCTAssertEqual(x[31], -4)

        // MXFP4, e = 128 (scale 2, halved to 1 against the doubled levels): levels are FP4 values * 2.
        var mxfp4 = [UInt8](repeating: 0, count: 17)
        mxfp4[0] = 128
        for j in 0..<16 { mxfp4[1 + j] = UInt8(j) | UInt8(j) << 4 }
        let m = try GGMLType.mxfp4.dequantized(mxfp4, count: 32)
        XCTAssertEqual(Array(m[0..<16]), [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12])
        XCTAssertEqual(Array(m[16..<32]), Array(m[0..<16]))

        // IQ4_NL, d = 1: the level table itself.
        var iq4 = [UInt8](repeating: 0, count: 18)
        iq4[1] = 0x3C  // f16 1.0
        for j in 0..<16 { iq4[2 + j] = UInt8(j) }
        let levels = try GGMLType.iq4_nl.dequantized(iq4, count: 32)
        XCTAssertEqual(Array(levels[0..<16]), [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113])
    }
}
