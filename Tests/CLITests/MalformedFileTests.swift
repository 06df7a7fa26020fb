import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// Issue 19's held-out malformed files, each made to pass every checksum as a hostile file
/// would, through every command that reads it: `moe inspect`, `moe logits` and paged
/// `moe logits` (a store's experts through a small pool) for models, `moe trace report` for
/// traces. Each must exit with an error status (not die of a signal) and one line on stderr
/// that names what is wrong, with no raw bytes from the file.
final class MalformedFileTests: XCTestCase {
    func testHeldOutMalformedFilesErrorCleanlyFromEveryCommand() throws {
        let dir = TemporaryDirectory()
        let good = dir.path("good.moe")
        _ = try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: good, options: .init(compression: .none))
        var cases: [(file: String, expected: String)] = []

        // Header manifest offset 2^64−1 (overflowed `manifestOffset + manifestLength`).
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        withUnsafeBytes(of: UInt64.max.littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
        withUnsafeBytes(of: XXH64.hash(Array(bytes[0..<56])).littleEndian) { bytes.replaceSubrange(56..<64, with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir.path("manifest-offset.moe")))
        cases.append((dir.path("manifest-offset.moe"), "manifest location"))

        // An expert whose stored length is 2^63−1 (overflowed rounding to the padded length).
        try Fixtures.rewriteStore(good, to: dir.path("stored-length.moe")) { $0.experts[3].storedLength = Int.max }
        cases.append((dir.path("stored-length.moe"), "stored length"))

        // GGUF: a damaged string length (64 KiB) that swallows the following bytes. (A zero
        // dimension and a swapped output shape: CLITests.testBadInputGivesOneLineErrorNotACrash.)
        let model = Fixtures.path("mixtral/model-q8_0.gguf")
        var gguf = [UInt8](try Data(contentsOf: URL(fileURLWithPath: model)))
        withUnsafeBytes(of: UInt64(1 << 16).littleEndian) { gguf.replaceSubrange(24..<32, with: $0) }  // the first key's length
        try Data(gguf).write(to: URL(fileURLWithPath: dir.path("string-length.gguf")))
        cases.append((dir.path("string-length.gguf"), "string-length.gguf"))

        for (file, expected) in cases {
            var commands = [["inspect", file], ["logits", file, "--tokens", "1,2"]]
            if file.hasSuffix(".moe") { commands.append(["logits", file, "--tokens", "1,2", "--expert-cache", "2"]) }
            for arguments in commands { try expectCleanError(arguments, expected) }
        }

        // Traces: an MoE layer listed twice; 16,000 experts per layer (binary and JSONL).
        let header = TraceHeader(model: "m", architecture: "olmoe", layerCount: 2, moeLayers: [0, 1], expertCount: 4, expertsPerToken: 2,
                                 expertBytes: 1, uniformExperts: true, paged: false)
        var duplicate = Trace(header: header), huge = Trace(header: header)
        duplicate.header.moeLayers = [1, 1]
        huge.header.expertCount = 16_000
        for (name, trace, expected) in [("duplicate", duplicate, "strictly increasing"), ("huge", huge, "at most")] {
            try Data(TraceCodec.encode(trace)).write(to: URL(fileURLWithPath: dir.path("\(name).moetrace")))
            try TraceJSONL.encode(trace).write(to: URL(fileURLWithPath: dir.path("\(name).jsonl")))
            for file in [dir.path("\(name).moetrace"), dir.path("\(name).jsonl")] {
                try expectCleanError(["trace", "report", file, "-o", dir.path("report.html")], expected)
            }
        }
    }

    func expectCleanError(_ arguments: [String], _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try Fixtures.runMoe(arguments)
        XCTAssertTrue(r.exited, "\(arguments) died of a signal: \(r.stderr)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "\(arguments)", file: file, line: line)
        let message = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertFalse(message.contains("\n"), "\(arguments): more than one line: \(message.prefix(500))", file: file, line: line)
        XCTAssertLessThan(message.count, 1000, "\(arguments): \(message.prefix(500))", file: file, line: line)
        XCTAssertFalse(message.unicodeScalars.contains { $0.properties.generalCategory == .control }, "\(arguments): raw bytes", file: file, line: line)
        XCTAssertTrue(message.contains(expected), "\(arguments): stderr was \(message.prefix(500))", file: file, line: line)
    }
}
