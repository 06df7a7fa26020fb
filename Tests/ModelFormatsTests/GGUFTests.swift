import Foundation
import ModelFormats
import Quantization
import TestSupport
import XCTest

final class GGUFTests: XCTestCase {
    let q8 = Fixtures.path("mixtral/model-q8_0.gguf")

    /// A GGUF written by llama.cpp's converter parses with the metadata gguf-py reported.
    func testReadsConverterOutput() throws {
        let file = try GGUFFile(path: q8)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.architecture, "llama")
        XCTAssertEqual(file.alignment, 32)
        XCTAssertEqual(file.metadata["llama.block_count"]?.int, 2)
        XCTAssertEqual(file.metadata["llama.expert_count"]?.int, 4)
        let tokens = try XCTUnwrap(file.metadata["tokenizer.ggml.tokens"]?.array)
        let embedding = try XCTUnwrap(file.tensor("token_embd.weight"))
        XCTAssertEqual(tokens.count, embedding.shape[1])
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertEqual(embedding.shape[0], 64)
        let experts = try XCTUnwrap(file.tensor("blk.0.ffn_gate_exps.weight"))
        XCTAssertEqual(experts.shape.count, 3)
        XCTAssertEqual(experts.data.count, experts.elementCount / 32 * 34)
        XCTAssertEqual(file.dataOffset % 32, 0)
        XCTAssertTrue(file.tensors.allSatisfy { $0.offset % 32 == 0 })
    }

    func testEveryMetadataTypeRoundTripsIncludingNestedArrays() throws {
        var writer = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)),
            ("u64", .uint64(1 << 60)), ("i64", .int64(-(1 << 60))),
            ("f32", .float32(3.5)), ("f64", .float64(-2.25)), ("bool", .bool(true)),
            ("str", .string("héllo ✓")), ("empty", .string("")),
            ("arr", .array(.int32, [.int32(1), .int32(-2)])),
            ("strings", .array(.string, [.string("a"), .string("bc")])),
            ("nested", .array(.array, [.array(.uint8, [.uint8(1)]), .array(.uint8, [])])),
        ]
        for (k, v) in values { writer.set(k, v) }
        writer.tensors = [GGUFWriter.Tensor(name: "t", type: .f32, shape: [2, 3], data: Data(count: 24))]
        for version: UInt32 in [2, 3] {
            writer.version = version
            let dir = TemporaryDirectory()
            try writer.write(to: dir.path("m.gguf"))
            let file = try GGUFFile(path: dir.path("m.gguf"))
            XCTAssertEqual(file.version, version)
            XCTAssertEqual(file.metadataKeys, values.map(\.0))
            for (k, v) in values { XCTAssertEqual(file.metadata[k], v, k) }
            XCTAssertEqual(file.tensor("t")?.shape, [2, 3])
            XCTAssertEqual(file.metadata["u64"]?.int, 1 << 60)
            XCTAssertEqual(file.metadata["f32"]?.double, 3.5)
        }
    }

    // MARK: - Damaged files: each is a typed error naming what and where.

    func write(_ bytes: Data) throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory()
        let path = dir.path("bad.gguf")
        try bytes.write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    func assertError(_ bytes: Data, file: StaticString = #filePath, line: UInt = #line, _ check: (ModelFormatError) -> Bool) throws {
        let (dir, path) = try write(bytes)
        defer { _ = dir }
        do {
            _ = try GGUFFile(path: path)
            XCTFail("expected an error", file: file, line: line)
        } catch let error as ModelFormatError {
            XCTAssertTrue(check(error), "unexpected error: \(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(path), "message should name the file: \(error)", file: file, line: line)
        }
    }

    func original() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: q8)) }

    func testWrongMagic() throws {
        var bytes = try original()
        bytes.replaceSubrange(0..<4, with: Array("GGML".utf8))
        try assertError(bytes) { if case .badMagic(_, let found, _) = $0 { return found == "'GGML'" } else { return false } }
        try assertError(Data("{\"not\": \"gguf\"}".utf8)) { if case .badMagic = $0 { return true } else { return false } }
    }

    func testEmptyFile() throws {
        try assertError(Data()) { if case .truncated = $0 { return true } else { return false } }
    }

    func testUnsupportedVersions() throws {
        for version: UInt32 in [1, 4, 0x0300_0000] {  // the last is a big-endian v3 file
            var bytes = try original()
            withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
            try assertError(bytes) { if case .unsupportedVersion(_, let v) = $0 { return v == version } else { return false } }
        }
    }

    /// Every cut through the header is reported as a truncation, never a crash.
    func testTruncatedHeaderAtEveryLength() throws {
        let bytes = try original()
        let header = try GGUFFile(path: q8).dataOffset
        var cuts = Array(stride(from: 0, to: header, by: 7))
        cuts.append(header - 1)
        for cut in cuts {
            let (dir, path) = try write(bytes.prefix(cut))
            defer { _ = dir }
            XCTAssertThrowsError(try GGUFFile(path: path), "cut at \(cut)") { error in
                guard let e = error as? ModelFormatError else { return XCTFail("\(error)") }
                switch e {
                case .truncated, .tensorOutOfBounds: break
                default: XCTFail("cut at \(cut): \(e)")
                }
            }
        }
    }

    func testTensorDataPastEndOfFile() throws {
        let bytes = try original()
        try assertError(bytes.prefix(bytes.count - 100)) {
            if case let .tensorOutOfBounds(_, tensor, end, size) = $0 { return !tensor.isEmpty && end > size } else { return false }
        }
    }

    func testAbsurdCounts() throws {
        var bytes = try original()
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        try assertError(bytes) { if case .implausible(_, let what, _, let offset) = $0 { return what == "tensor count" && offset == 8 } else { return false } }

        bytes = try original()
        withUnsafeBytes(of: UInt64.max.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
        try assertError(bytes) { if case .implausible(_, let what, _, _) = $0 { return what == "metadata count" } else { return false } }

        // First key's string length (right after the 24-byte header).
        bytes = try original()
        withUnsafeBytes(of: UInt64(1 << 50).littleEndian) { bytes.replaceSubrange(24..<32, with: $0) }
        try assertError(bytes) { if case .implausible(_, _, _, let offset) = $0 { return offset == 24 } else { return false } }
    }

    func testAbsurdDimensionsAndArrays() throws {
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.tensors = [GGUFWriter.Tensor(name: "huge", type: .f32, shape: [1 << 30, 1 << 30], data: Data(count: 32))]
        try assertError(writer.encode()) { if case .implausible = $0 { return true } else { return false } }

        writer.tensors = [GGUFWriter.Tensor(name: "five", type: .f32, shape: [1, 1, 1, 1, 1], data: Data(count: 4))]
        try assertError(writer.encode()) { if case let .invalidTensor(_, tensor, _) = $0 { return tensor == "five" } else { return false } }

        // An array claiming more elements than the file has bytes.
        writer = GGUFWriter()
        writer.set("list", .array(.uint32, [.uint32(1)]))
        var bytes = writer.encode()
        // Header 24 + key (8 + 4) + type 4 + element type 4 = 44: the u64 count follows.
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { bytes.replaceSubrange(44..<52, with: $0) }  // absurd
        try assertError(bytes) { if case .implausible(_, let what, _, let offset) = $0 { return what.contains("list") && offset == 44 } else { return false } }
        withUnsafeBytes(of: UInt64(1000).littleEndian) { bytes.replaceSubrange(44..<52, with: $0) }  // plausible, but cut short
        try assertError(bytes) { if case let .truncated(_, _, _, what) = $0 { return what.contains("list") } else { return false } }
    }

    func testUnknownTypesMisalignmentAndDuplicates() throws {
        var writer = GGUFWriter()
        writer.tensors = [GGUFWriter.Tensor(name: "t", type: .f32, shape: [8], data: Data(count: 32))]
        var bytes = writer.encode()
        // Tensor info starts at 24: name (8 + 1), n_dims 4, dims 8, then the type.
        withUnsafeBytes(of: UInt32(77).littleEndian) { bytes.replaceSubrange(45..<49, with: $0) }
        try assertError(bytes) { if case let .invalidTensor(_, _, reason) = $0 { return reason.contains("77") } else { return false } }

        bytes = writer.encode()
        withUnsafeBytes(of: UInt64(3).littleEndian) { bytes.replaceSubrange(49..<57, with: $0) }
        try assertError(bytes) { if case let .invalidTensor(_, _, reason) = $0 { return reason.contains("alignment") } else { return false } }

        writer.tensors.append(writer.tensors[0])
        try assertError(writer.encode()) { if case let .invalidTensor(_, _, reason) = $0 { return reason.contains("twice") } else { return false } }

        writer = GGUFWriter()
        writer.tensors = [GGUFWriter.Tensor(name: "partial", type: .q8_0, shape: [40], data: Data(count: 68))]
        try assertError(writer.encode()) { if case let .invalidTensor(_, _, reason) = $0 { return reason.contains("block size") } else { return false } }

        writer = GGUFWriter()
        writer.set("general.alignment", .uint32(3))
        try assertError(writer.encode()) { if case let .invalidMetadata(_, key, _) = $0 { return key == "general.alignment" } else { return false } }

        writer = GGUFWriter()
        writer.set("k", .uint8(1))
        writer.set("j", .uint8(2))
        bytes = writer.encode()
        // Each entry is 8 (length) + 1 (name) + 4 (type) + 1 (value) bytes: rename "j" to "k".
        bytes[24 + 14 + 8] = UInt8(ascii: "k")
        try assertError(bytes) { if case let .invalidMetadata(_, key, reason) = $0 { return key == "k" && reason.contains("duplicate") } else { return false } }
    }

    /// Random single-byte corruption anywhere in the header never crashes the reader.
    func testRandomHeaderCorruptionNeverCrashes() throws {
        let bytes = try original()
        let header = try GGUFFile(path: q8).dataOffset
        var generator = SplitMix64(seed: 42)
        for _ in 0..<300 {
            var damaged = bytes
            let at = Int(generator.next() % UInt64(header))
            damaged[at] = UInt8(truncatingIfNeeded: generator.next())
            let (dir, path) = try write(damaged)
            defer { _ = dir }
            do { _ = try GGUFFile(path: path) } catch is ModelFormatError {} catch { XCTFail("untyped error \(error)") }
        }
    }

    /// A damaged string length that swallows the following bytes: the error names the key
    /// escaped and cut short, on one line, instead of repeating kilobytes of raw bytes.
    func testSwallowedBytesAreShownEscapedAndCut() throws {
        var bytes = try original()
        var swallowedAny = false
        for length in [60, 200, 700, 1500] as [UInt64] {
            withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(24..<32, with: $0) }  // first key's length
            let (dir, path) = try write(bytes)
            defer { _ = dir }
            XCTAssertThrowsError(try GGUFFile(path: path)) { error in
                let message = "\(error)"
                XCTAssertFalse(message.contains("\n"), message)
                XCTAssertFalse(message.unicodeScalars.contains { $0.properties.generalCategory == .control }, message)
                XCTAssertLessThan(message.count, path.count + 400, message)
                if message.contains("more characters") { swallowedAny = true }
            }
        }
        XCTAssertTrue(swallowedAny, "at least one damaged length swallowed more than the shown limit")
        XCTAssertEqual(ModelFormatError.shown("a\u{0}b\tc"), "a\\0b\\tc")
    }
}
