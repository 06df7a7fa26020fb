import Foundation
import XCTest

@testable import Quantization

/// The K-quant and IQ4 quantizers, importance-weighted and plain, against ggml's own
/// `ggml_quantize_chunk(…, imatrix)` and `ggml_quantize_chunk(…, NULL)` bytes
/// (Tests/Fixtures/quant/imatrix, made by tools/make_imatrix_vectors.py).
final class WeightedQuantizeTests: XCTestCase {
    struct Manifest: Decodable {
        struct Output: Decodable {
            let type: String
            /// nil: quantized without importance.
            let set: Int?
            let output: String
        }
        let columns: Int
        let rows: [String]
        let importanceSets: [String]
        let input: String
        let importance: String
        let outputs: [Output]
    }

    func load() throws -> (Manifest, [Float], [[Float]]) {
        let url = QuantVectors.directory.appendingPathComponent("imatrix/manifest.json")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let m = try decoder.decode(Manifest.self, from: Data(contentsOf: url))
        let x = try QuantVectors.floats("imatrix/" + m.input)
        let w = try QuantVectors.floats("imatrix/" + m.importance)
        XCTAssertEqual(x.count, m.rows.count * m.columns)
        XCTAssertEqual(w.count, m.importanceSets.count * m.columns)
        let sets = (0..<m.importanceSets.count).map { Array(w[($0 * m.columns)..<(($0 + 1) * m.columns)]) }
        return (m, x, sets)
    }

    func quantize(_ type: GGMLType, _ x: [Float], columns: Int, importance: [Float]?) throws -> [UInt8] {
        let size = try XCTUnwrap(type.traits.byteCount(elements: x.count))
        var out = [UInt8](repeating: 0xA5, count: size)
        try x.withUnsafeBufferPointer { source in
            try out.withUnsafeMutableBytes { destination in
                try type.quantize(source.baseAddress!, into: destination.baseAddress!, count: x.count, rowLength: columns, importance: importance)
            }
        }
        return out
    }

    func testBitExactAgainstGGML() throws {
        let (m, x, sets) = try load()
        XCTAssertEqual(Set(m.outputs.map(\.type)), ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"])
        XCTAssertEqual(m.outputs.count, 7 * (sets.count + 1))
        for o in m.outputs {
            let type = try XCTUnwrap(GGMLType(name: o.type), o.type)
            let expected = try QuantVectors.bytes("imatrix/" + o.output)
            let got = try quantize(type, x, columns: m.columns, importance: o.set.map { sets[$0] })
            XCTAssertEqual(got.count, expected.count, o.output)
            let rowBytes = expected.count / m.rows.count
            for r in 0..<m.rows.count where got[(r * rowBytes)..<((r + 1) * rowBytes)] != expected[(r * rowBytes)..<((r + 1) * rowBytes)] {
                XCTFail("\(o.type), importance \(o.set.map { m.importanceSets[$0] } ?? "none"), row \(m.rows[r]): bytes differ from ggml")
            }
        }
    }

    /// Weighting by importance lowers the importance-weighted error against the reference encoding.
    func testWeightedErrorIsLower() throws {
        let (m, x, sets) = try load()
        for name in ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"] {
            let type = try XCTUnwrap(GGMLType(name: name))
            for (s, w) in sets.enumerated() {
                func error(_ bytes: [UInt8]) throws -> Double {
                    let y = try type.dequantized(bytes, count: x.count)
                    return x.indices.reduce(0.0) { $0 + Double(w[$1 % m.columns]) * Double(x[$1] - y[$1]) * Double(x[$1] - y[$1]) }
                }
                let plain = try error(try quantize(type, x, columns: m.columns, importance: nil))
                let weighted = try error(try quantize(type, x, columns: m.columns, importance: w))
                XCTAssertLessThan(weighted, plain, "\(name), importance \(m.importanceSets[s])")
            }
        }
    }

    func testImportanceOfWrongLengthIsRefused() throws {
        let x = [Float](repeating: 1, count: 512)
        XCTAssertThrowsError(try quantize(.q4_K, x, columns: 512, importance: [Float](repeating: 1, count: 256)))
        XCTAssertThrowsError(try quantize(.q4_K, x, columns: 384, importance: [Float](repeating: 1, count: 384)))
        // Types without a weighted quantizer ignore importance, as llama.cpp's q8_0 does.
        XCTAssertEqual(try quantize(.q8_0, x, columns: 512, importance: [Float](repeating: 2, count: 512)),
                       try quantize(.q8_0, x, columns: 512, importance: nil))
    }
}
