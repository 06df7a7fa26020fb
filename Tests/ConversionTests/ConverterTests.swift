import Conversion
import ExpertStore
import Foundation
import ModelFormats
import TestSupport
import Tokenizer
import XCTest

/// `moe convert` as a library call: what the store holds, how it is written, how its size is predicted.
final class ConverterTests: XCTestCase {
    /// The size the planner works with bounds the store `moe convert` writes, closely.
    func testMeasuredStoreSizeBoundsTheWrittenStore() throws {
        let input = Fixtures.path("qwen3moe/hf")
        let source = try ModelSource(path: input)
        let dir = TemporaryDirectory()
        let plans = [BitPlan(default: "q4_0"), BitPlan(default: "q8_0", experts: [.init(layer: 1, expert: 3, type: "q4_0"), .init(layer: 0, expert: 0, type: "f16")]),
                     BitPlan(default: "keep")]
        for (i, plan) in plans.enumerated() {
            let out = dir.path("s\(i).moe")
            let predicted = try Converter.storeSize(source: source, plan: plan)
            let report = try Converter.convert(input: input, output: out, options: .init(plan: plan, compression: .none))
            let actual = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
            XCTAssertEqual(report.fileSize, actual)
            XCTAssertLessThanOrEqual(actual, predicted, "plan \(i)")
            XCTAssertLessThan(predicted - actual, 2048, "plan \(i): the bound is loose by \(predicted - actual) bytes")
        }
    }

    /// `auto` keeps LZ4 only where it loads faster at the given disk speed.
    func testAutoCompressionWeighsDecodeTimeAgainstDiskSpeed() throws {
        let dir = TemporaryDirectory()
        for (bandwidth, expectCompressed) in [(1e6, true), (1e12, false)] {
            let out = dir.path("m-\(Int(bandwidth)).moe")
            let report = try Converter.convert(input: Fixtures.path("mixtral/hf-bf16"), output: out,
                                               options: .init(compression: .auto, diskBandwidth: bandwidth))
            XCTAssertEqual(report.diskBandwidth, bandwidth)
            let records = try MoEStoreFile(path: out).manifest.experts
            XCTAssertTrue(records.allSatisfy { ($0.compression != .none) == expectCompressed }, "\(bandwidth) B/s")
        }
    }

    func testInterruptedConvertLeavesNothingThatLooksValid() throws {
        let dir = TemporaryDirectory()
        let out = dir.path("model.moe")
        // A previous good store at the output path survives a convert that fails.
        _ = try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: out, options: .init())
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: out,
                                                   options: .init(plan: BitPlan(default: "q8_0", experts: [.init(layer: 0, expert: 99, type: "q8_0")]))))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + ".partial"))

        // A writer killed mid-way: the partial file has no magic and is not accepted.
        let writer = try StoreWriter(outputPath: dir.path("killed.moe"))
        try [UInt8](repeating: 7, count: 10_000).withUnsafeBytes { try writer.addDense(name: "x", type: .f32, shape: [2500], bytes: $0) }
        let snapshot = try Data(contentsOf: URL(fileURLWithPath: writer.partialPath))  // what a kill would leave
        try snapshot.write(to: URL(fileURLWithPath: dir.path("killed-copy.moe")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path("killed.moe")))
        XCTAssertThrowsError(try ModelSource(path: dir.path("killed-copy.moe"))) { error in
            guard case ModelFormatError.badMagic = error else { return XCTFail("\(error)") }
        }
        writer.abandon()
        XCTAssertFalse(FileManager.default.fileExists(atPath: writer.partialPath))
    }

    func testStoreCarriesTheTokenizer() throws {
        for (input, text) in [("qwen2moe/model-q8_0.gguf", "def f(x): return x"), ("mixtral/hf", "Hello, world!")] {
            let dir = TemporaryDirectory()
            let moe = dir.path("model.moe")
            _ = try Converter.convert(input: Fixtures.path(input), output: moe, options: .init())
            let original = try Tokenizer(path: Fixtures.path(input))
            let embedded = try Tokenizer(path: moe)
            XCTAssertEqual(embedded.encode(text), original.encode(text), input)
        }
    }

    /// A Hugging Face directory with only tokenizer.model: the store embeds the binary model
    /// file intact, and the embedded tokenizer gives transformers' ids (recorded with the
    /// directory's tokenizer.json, which the model file reproduces).
    func testStoreCarriesATokenizerModelOnlyTokenizer() throws {
        let dir = TemporaryDirectory()
        let hf = try dir.copy(fixture: "mixtral/hf", to: "hf", excluding: ["tokenizer.json"])
        let moe = dir.path("model.moe")
        _ = try Converter.convert(input: hf.path, output: moe, options: .init())
        let embedded = try Tokenizer(path: moe)
        XCTAssertTrue(embedded.origin.hasPrefix("tokenizer.model"), embedded.origin)
        let cases = try RecordedTokenizerCases.load("model-mixtral")
        XCTAssertGreaterThan(cases.count, 40)
        let wrong = cases.filter { embedded.encode($0.text) != $0.ids }.map(\.text)
        XCTAssertEqual(wrong, [])
    }
}
