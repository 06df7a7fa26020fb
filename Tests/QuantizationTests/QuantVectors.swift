import Foundation
import XCTest

@testable import Quantization

/// The committed reference vectors in Tests/Fixtures/quant, made by tools/make_quant_vectors.py
/// (format documented there).
struct QuantVectors: Decodable {
    struct References: Decodable {
        let gguf: String
        let numpy: String
        let llamaCppCommit: String
    }

    struct FloatToHalf: Decodable {
        let input: String
        let output: String
        let count: Int
    }

    struct DequantizeCase: Decodable {
        let type: String
        let blocks: Int
        let input: String
        let output: String
    }

    struct QuantizeCase: Decodable {
        let type: String
        let output: String
        let reference: String
        let relativeRmse: Double
    }

    struct QuantizeSet: Decodable {
        let input: String
        let columns: Int
        let rows: [String]
        let gaussianRows: [Int]
        let types: [QuantizeCase]
    }

    let format: Int
    let references: References
    let f16ToF32: String
    let f32ToF16: FloatToHalf
    let dequantize: [DequantizeCase]
    let quantize: QuantizeSet

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/quant")

    static func load() throws -> QuantVectors {
        let url = directory.appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("missing \(url.path): run tools/make_quant_vectors.py")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(QuantVectors.self, from: Data(contentsOf: url))
    }

    /// The raw bytes of a vector file.
    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// A vector file of little-endian float32 values.
    static func floats(_ name: String) throws -> [Float] {
        try values(name, as: UInt32.self).map { Float(bitPattern: $0) }
    }

    /// A vector file of little-endian fixed-width integers.
    static func values<T: FixedWidthInteger>(_ name: String, as: T.Type) throws -> [T] {
        let raw = try bytes(name)
        let size = MemoryLayout<T>.size
        XCTAssertEqual(raw.count % size, 0, "\(name): size is not a multiple of \(size)")
        return raw.withUnsafeBytes { buffer in
            (0..<raw.count / size).map { T(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) }
        }
    }
}

extension GGMLType {
    /// Dequantizes a whole buffer (test convenience).
    func dequantized(_ bytes: [UInt8], count: Int) throws -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        try bytes.withUnsafeBytes { source in
            try out.withUnsafeMutableBufferPointer { destination in
                try dequantize(source.baseAddress!, into: destination.baseAddress!, count: count)
            }
        }
        return out
    }

    /// Quantizes a whole buffer (test convenience).
    func quantized(_ values: [Float]) throws -> [UInt8] {
        let size = try XCTUnwrap(traits.byteCount(elements: values.count))
        var out = [UInt8](repeating: 0xA5, count: size)
        try values.withUnsafeBufferPointer { source in
            try out.withUnsafeMutableBytes { destination in
                try quantize(source.baseAddress!, into: destination.baseAddress!, count: values.count)
            }
        }
        return out
    }
}

/// Index and bit patterns of the first difference between two float arrays, if any.
func firstBitDifference(_ a: [Float], _ b: [Float]) -> String? {
    guard a.count == b.count else { return "lengths \(a.count) and \(b.count)" }
    for i in a.indices where a[i].bitPattern != b[i].bitPattern {
        let mismatches = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }.count
        return "element \(i): \(a[i]) (0x\(String(a[i].bitPattern, radix: 16))) vs \(b[i]) (0x\(String(b[i].bitPattern, radix: 16))); \(mismatches) of \(a.count) differ"
    }
    return nil
}

/// Relative RMSE `sqrt(mean((y - x)^2) / mean(x^2))`, accumulated in Double.
func relativeRMSE(_ x: ArraySlice<Float>, _ y: ArraySlice<Float>) -> Double {
    var error = 0.0
    var power = 0.0
    for (a, b) in zip(x, y) {
        error += (Double(b) - Double(a)) * (Double(b) - Double(a))
        power += Double(a) * Double(a)
    }
    return (error / power).squareRoot()
}
