import XCTest

@testable import Quantization

final class QuantTraitsTests: XCTestCase {
    func testTableHasEveryTypeOnce() {
        for type in GGMLType.allCases {
            XCTAssertEqual(type.traits.type, type)
            XCTAssertEqual(GGMLType(name: type.description), type)
            XCTAssertEqual(GGMLType(name: type.description.uppercased()), type)
        }
        XCTAssertNil(GGMLType(name: "q4_2"))
    }

    /// Block sizes and bytes per block as in ggml-common.h.
    func testBlockGeometry() {
        let expected: [GGMLType: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
            .q5_1: (32, 24), .q8_0: (32, 34), .q2_K: (256, 84), .q3_K: (256, 110), .q4_K: (256, 144),
            .q5_K: (256, 176), .q6_K: (256, 210), .iq4_nl: (32, 18), .iq4_xs: (256, 136), .mxfp4: (32, 17),
            .iq2_xxs: (256, 66), .iq2_xs: (256, 74), .iq3_xxs: (256, 98), .iq3_s: (256, 110),
        ]
        for (type, (block, bytes)) in expected {
            XCTAssertEqual(type.traits.blockSize, block, "\(type)")
            XCTAssertEqual(type.traits.bytesPerBlock, bytes, "\(type)")
        }
        XCTAssertEqual(GGMLType.q4_K.traits.bitsPerWeight, 4.5)
        XCTAssertEqual(GGMLType.q6_K.traits.bitsPerWeight, 6.5625)
    }

    func testByteCount() {
        let q4K = GGMLType.q4_K.traits
        XCTAssertEqual(q4K.byteCount(elements: 0), 0)
        XCTAssertEqual(q4K.byteCount(elements: 4096), 16 * 144)
        XCTAssertNil(q4K.byteCount(elements: 4095))
        XCTAssertNil(q4K.byteCount(elements: 128))
        XCTAssertNil(q4K.byteCount(elements: -256))
        XCTAssertNil(GGMLType.f32.traits.byteCount(elements: Int.max / 2))  // bytes overflow Int
        XCTAssertEqual(GGMLType.f32.traits.byteCount(elements: 3), 12)
    }

    func testPartialBlocksThrow() throws {
        var floats = [Float](repeating: 0, count: 512)
        var bytes = [UInt8](repeating: 0, count: 512)
        for type in GGMLType.allCases where type.traits.blockSize > 1 {
            for count in [type.traits.blockSize - 1, type.traits.blockSize + 1, -type.traits.blockSize] {
                try bytes.withUnsafeMutableBytes { raw in
                    try floats.withUnsafeMutableBufferPointer { f in
                        if type.isComputable {
                            XCTAssertThrowsError(try type.dequantize(raw.baseAddress!, into: f.baseAddress!, count: count)) {
                                XCTAssertEqual($0 as? QuantizationError, .partialBlock(type, elements: count))
                            }
                        }
                        if type.isQuantizable {
                            XCTAssertThrowsError(try type.quantize(f.baseAddress!, into: raw.baseAddress!, count: count)) {
                                XCTAssertEqual($0 as? QuantizationError, .partialBlock(type, elements: count))
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(
            QuantizationError.partialBlock(.q4_K, elements: 100).description,
            "100 elements is not a whole number of q4_K blocks of 256")
    }

    func testUnsupportedTypesThrow() throws {
        var floats = [Float](repeating: 0, count: 256)
        var bytes = [UInt8](repeating: 0, count: 512)
        let unsupported = GGMLType.allCases.filter { !$0.isComputable }
        XCTAssertTrue(unsupported.contains(.iq1_s))
        for type in unsupported {
            try bytes.withUnsafeMutableBytes { raw in
                try floats.withUnsafeMutableBufferPointer { f in
                    XCTAssertThrowsError(try type.dequantize(raw.baseAddress!, into: f.baseAddress!, count: 256)) {
                        XCTAssertEqual($0 as? QuantizationError, .unsupported(type, operation: "dequantization"))
                    }
                }
            }
        }
        for type in GGMLType.allCases where !type.isQuantizable {
            try bytes.withUnsafeMutableBytes { raw in
                try floats.withUnsafeMutableBufferPointer { f in
                    XCTAssertThrowsError(try type.quantize(f.baseAddress!, into: raw.baseAddress!, count: 256)) {
                        XCTAssertEqual($0 as? QuantizationError, .unsupported(type, operation: "quantization"))
                    }
                }
            }
        }
        XCTAssertEqual(
            QuantizationError.unsupported(.iq1_s, operation: "dequantization").description,
            "dequantization of iq1_s tensors is not supported by this build")
    }

    /// An empty row is fine for every kernel.
    func testZeroCount() throws {
        var floats = [Float](repeating: 0, count: 1)
        var bytes = [UInt8](repeating: 0, count: 1)
        for type in GGMLType.allCases {
            try bytes.withUnsafeMutableBytes { raw in
                try floats.withUnsafeMutableBufferPointer { f in
                    if type.isComputable { try type.dequantize(raw.baseAddress!, into: f.baseAddress!, count: 0) }
                    if type.isQuantizable { try type.quantize(f.baseAddress!, into: raw.baseAddress!, count: 0) }
                }
            }
        }
    }

    /// Every byte pattern decodes without trapping (all-0xFF and random blocks are in the vectors;
    /// here, f16 scales that are NaN and infinity).
    func testNonFiniteScalesDecode() throws {
        for type in GGMLType.allCases where type.isComputable && type.traits.blockSize > 1 {
            let block = [UInt8](repeating: 0xFF, count: type.traits.bytesPerBlock)  // f16 0xFFFF is NaN
            let out = try type.dequantized(block, count: type.traits.blockSize)
            XCTAssertEqual(out.count, type.traits.blockSize)
        }
    }
}
