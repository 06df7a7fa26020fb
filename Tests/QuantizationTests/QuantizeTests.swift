import XCTest

@testable import Quantization

/// Quantization against llama.cpp's C reference (`quantize_row_*_ref`, called by the vector
/// script) and gguf.quants where it has a quantizer.
final class QuantizeTests: XCTestCase {
    static let requiredTypes: [GGMLType] = [.q8_0, .q4_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    func testEveryRequiredTypeHasAQuantizer() {
        for type in Self.requiredTypes {
            XCTAssertTrue(type.isQuantizable, "\(type)")
        }
        for type in GGMLType.allCases where type.isQuantizable {
            XCTAssertTrue(type.isComputable, "\(type) can be written but not read")
        }
    }

    /// Our bytes equal the reference encoding, row by row (rows are labelled in the manifest).
    func testBitExactAgainstReference() throws {
        let vectors = try QuantVectors.load()
        let set = vectors.quantize
        let input = try QuantVectors.floats(set.input)
        XCTAssertEqual(input.count, set.rows.count * set.columns)
        var covered = Set<GGMLType>()
        for entry in set.types {
            let type = try XCTUnwrap(GGMLType(name: entry.type))
            let expected = try QuantVectors.bytes(entry.output)
            let actual = try type.quantized(input)
            XCTAssertEqual(actual.count, expected.count, "\(type)")
            let rowBytes = try XCTUnwrap(type.traits.byteCount(elements: set.columns))
            for (r, label) in set.rows.enumerated() {
                let range = r * rowBytes..<(r + 1) * rowBytes
                if actual[range] != expected[range] {
                    let at = zip(actual[range], expected[range]).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                    XCTFail("\(type), row \(r) (\(label)): bytes differ from \(entry.reference) at offset \(at) of the row")
                }
            }
            covered.insert(type)
        }
        for type in GGMLType.allCases where type.isQuantizable && type != .f32 {
            XCTAssertTrue(covered.contains(type), "no reference vectors for \(type)")
        }
    }

    /// Error check that does not depend on byte equality: the relative RMSE of
    /// dequantize(quantize(x)) on the Gaussian rows is within 5% of the reference quantizer's.
    func testErrorMatchesReference() throws {
        let vectors = try QuantVectors.load()
        let set = vectors.quantize
        let input = try QuantVectors.floats(set.input)
        let gaussian = set.gaussianRows.flatMap { r in input[r * set.columns..<(r + 1) * set.columns] }
        for entry in set.types {
            let type = try XCTUnwrap(GGMLType(name: entry.type))
            let roundTrip = try type.dequantized(type.quantized(gaussian), count: gaussian.count)
            let rmse = relativeRMSE(gaussian[...], roundTrip[...])
            XCTAssertLessThanOrEqual(rmse, entry.relativeRmse * 1.05, "\(type)")
            XCTAssertGreaterThan(rmse, 0, "\(type)")
        }
    }

    /// The reference error of each format on Gaussian data is in the range its bits per weight
    /// lead one to expect (each extra bit roughly halves it), a sanity check on the vectors.
    func testPublishedErrorRanges() throws {
        let expected: [(GGMLType, ClosedRange<Double>)] = [
            (.q8_0, 0.003...0.008), (.q6_K, 0.01...0.03), (.q5_K, 0.025...0.05), (.q5_0, 0.03...0.06),
            (.q4_K, 0.05...0.09), (.q4_0, 0.07...0.11), (.q3_K, 0.1...0.2), (.q2_K, 0.2...0.4),
        ]
        let vectors = try QuantVectors.load()
        for (type, range) in expected {
            let entry = try XCTUnwrap(vectors.quantize.types.first { $0.type == type.description })
            XCTAssertTrue(range.contains(entry.relativeRmse), "\(type): \(entry.relativeRmse) outside \(range)")
        }
    }

    /// Zeros encode to blocks that decode to (signed) zeros.
    func testZeros() throws {
        for type in GGMLType.allCases where type.isQuantizable {
            let zeros = [Float](repeating: 0, count: 512)
            let decoded = try type.dequantized(type.quantized(zeros), count: zeros.count)
            XCTAssertTrue(decoded.allSatisfy { $0 == 0 }, "\(type)")
        }
    }

    /// NaN and infinities must not trap (the encoding is unspecified).
    func testNonFiniteInputDoesNotTrap() throws {
        var values = (0..<512).map { Float($0 % 7) - 3 }
        values[3] = .nan
        values[40] = .infinity
        values[300] = -.infinity
        values[301] = .signalingNaN
        for type in GGMLType.allCases where type.isQuantizable {
            _ = try type.dequantized(type.quantized(values), count: values.count)
        }
    }

    /// Quantizing at an odd destination address gives the same bytes.
    func testUnalignedDestination() throws {
        let values = (0..<512).map { sin(Float($0) * 0.37) * Float($0 % 13) }
        for type in GGMLType.allCases where type.isQuantizable {
            let aligned = try type.quantized(values)
            var shifted = [UInt8](repeating: 0, count: aligned.count + 1)
            try values.withUnsafeBufferPointer { source in
                try shifted.withUnsafeMutableBytes { out in
                    try type.quantize(source.baseAddress!, into: out.baseAddress! + 1, count: values.count)
                }
            }
            XCTAssertEqual(Array(shifted.dropFirst()), aligned, "\(type)")
        }
    }
}
