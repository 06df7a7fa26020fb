import Foundation
import TestSupport
@testable import Tokenizer
import XCTest

/// Hugging Face directories with `tokenizer.model` and no `tokenizer.json`: ids recorded from
/// transformers' `AutoTokenizer` on the same directories by tools/make_spm_only_fixtures.py.
final class SentencePieceOnlyTests: XCTestCase {
    struct Golden: Decodable {
        let hf: String
        let legacy: Bool
        let cases: [GoldenTests.Case]
    }

    func golden(_ name: String) throws -> Golden {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/\(name).json"))
        return try JSONDecoder().decode(Golden.self, from: data)
    }

    func mismatches(_ tokenizer: Tokenizer, _ cases: [GoldenTests.Case], label: String) -> [String] {
        GoldenTests.check(tokenizer, cases, label: label, checkDecoded: true)
    }

    func testDirectoriesWithOnlyTokenizerModelMatchTransformers() throws {
        for name in ["spm-only-legacy", "spm-only"] {
            let g = try golden(name)
            let dir = Fixtures.path(g.hf)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/tokenizer.json"))
            let tokenizer = try Tokenizer(huggingFaceDirectory: dir)
            XCTAssertTrue(tokenizer.origin.hasPrefix("tokenizer.model"), tokenizer.origin)
            XCTAssertTrue(tokenizer.origin.contains("legacy \(g.legacy)"), tokenizer.origin)
            XCTAssertGreaterThan(g.cases.count, 45)
            let problems = mismatches(tokenizer, g.cases, label: name)
            XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(30).joined(separator: "\n"))
        }
    }

    /// The conversion of the spm fixture's tokenizer.model gives exactly the vocabulary and merges
    /// transformers wrote into the same directory's tokenizer.json.
    func testConversionReproducesTransformersTokenizerJSON() throws {
        let dir = Fixtures.root.appendingPathComponent("tokenizers/spm/hf")
        let model = try Data(contentsOf: dir.appendingPathComponent("tokenizer.model"))
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer_config.json"))) as? [String: Any])
        let reference = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer.json"))) as? [String: Any])
        let converted = try SentencePieceConversion.tokenizerJSON(model: model, config: config, specialTokensMap: nil, addedTokens: nil, path: dir.path)
        let ours = try XCTUnwrap(converted["model"] as? [String: Any]), theirs = try XCTUnwrap(reference["model"] as? [String: Any])
        XCTAssertEqual(ours["vocab"] as? [String: Int], (theirs["vocab"] as? [String: Any])?.mapValues { ($0 as? NSNumber)?.intValue ?? -1 })
        let ourMerges = try XCTUnwrap(ours["merges"] as? [[String]])
        let theirMerges = try XCTUnwrap(theirs["merges"] as? [Any]).map { m -> [String] in
            if let pair = m as? [String] { return pair }
            return Tokenizer.splitMerge(m as? String ?? "").map { [$0.0, $0.1] } ?? []
        }
        XCTAssertGreaterThan(theirMerges.count, 1000)
        XCTAssertEqual(ourMerges.count, theirMerges.count)
        let firstDifference = zip(ourMerges, theirMerges).enumerated().first { $0.element.0 != $0.element.1 }
        XCTAssertNil(firstDifference, "merge \(firstDifference?.offset ?? -1) differs")
        for key in ["unk_token", "fuse_unk", "byte_fallback"] {
            XCTAssertEqual(ours[key] as? NSObject, theirs[key] as? NSObject, key)
        }
    }

    /// The Mixtral model fixture without its tokenizer.json tokenizes as recorded with it
    /// (the fixture script checks transformers agrees).
    func testModelDirectoryWithoutTokenizerJSON() throws {
        let temp = TemporaryDirectory()
        let src = Fixtures.root.appendingPathComponent("mixtral/hf")
        for f in ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: temp.url.appendingPathComponent(f))
        }
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/model-mixtral.json"))
        struct Recorded: Decodable { let hfCases: [GoldenTests.Case] }
        let cases = try JSONDecoder().decode(Recorded.self, from: data).hfCases
        let problems = mismatches(try Tokenizer(huggingFaceDirectory: temp.url.path), cases, label: "mixtral")
        XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(30).joined(separator: "\n"))
    }

    /// Both files present and different: tokenizer.json is used (as transformers) and the
    /// tokenizer says so.
    func testDisagreeingFilesAreReported() throws {
        let temp = TemporaryDirectory()
        let spm = Fixtures.root.appendingPathComponent("tokenizers/spm/hf")
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: spm.appendingPathComponent(f), to: temp.url.appendingPathComponent(f))
        }
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("mixtral/hf/tokenizer.model"),
                                         to: temp.url.appendingPathComponent("tokenizer.model"))
        let tokenizer = try Tokenizer(huggingFaceDirectory: temp.url.path)
        XCTAssertEqual(tokenizer.origin, "tokenizer.json")
        XCTAssertEqual(tokenizer.notes.count, 1)
        XCTAssertTrue(tokenizer.notes.first?.contains("used tokenizer.json") == true, tokenizer.notes.description)

        // The same files agreeing: no note.
        try FileManager.default.removeItem(at: temp.url.appendingPathComponent("tokenizer.model"))
        try FileManager.default.copyItem(at: spm.appendingPathComponent("tokenizer.model"), to: temp.url.appendingPathComponent("tokenizer.model"))
        XCTAssertEqual(try Tokenizer(huggingFaceDirectory: temp.url.path).notes, [])
    }

    /// Damaged tokenizer.model files are errors naming the file, never a crash.
    func testDamagedModelFilesAreErrors() throws {
        let model = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/spm-only/tokenizer.model"))
        var damaged: [(String, Data)] = [("empty", Data()), ("truncated", model.prefix(model.count / 2)),
                                         ("one byte", model.prefix(1)), ("text", Data("not a protobuf at all".utf8))]
        var rng = SplitMix64(seed: 20)
        for i in 0..<40 {
            var bytes = [UInt8](model)
            for _ in 0..<8 { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            damaged.append(("flipped \(i)", Data(bytes)))
        }
        var rejected = 0
        for (label, data) in damaged {
            let temp = TemporaryDirectory()
            try data.write(to: temp.url.appendingPathComponent("tokenizer.model"))
            do {
                let t = try Tokenizer(huggingFaceDirectory: temp.url.path)
                // A flip inside a piece's text or score can still be a valid model; it must work.
                _ = t.decode(t.encode("def f(x): return x"))
            } catch let error as TokenizerError {
                rejected += 1
                XCTAssertTrue("\(error)".contains("tokenizer.model"), "\(label): \(error)")
            }
        }
        XCTAssertGreaterThanOrEqual(rejected, 4, "the empty, truncated, one-byte and text files are all rejected")
    }

    func testUnsupportedTokenizerClassIsNamed() throws {
        let temp = TemporaryDirectory()
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("tokenizers/spm-only/tokenizer.model"),
                                         to: temp.url.appendingPathComponent("tokenizer.model"))
        try Data(#"{"tokenizer_class": "T5Tokenizer"}"#.utf8).write(to: temp.url.appendingPathComponent("tokenizer_config.json"))
        XCTAssertThrowsError(try Tokenizer(huggingFaceDirectory: temp.url.path)) { error in
            XCTAssertTrue("\(error)".contains("T5Tokenizer"), "\(error)")
        }
    }

    /// Directories without added_tokens_decoder (older transformers): special_tokens_map.json and
    /// added_tokens.json define the special and added tokens, as transformers' legacy loading does.
    func testLegacyAddedTokensFile() throws {
        let temp = TemporaryDirectory()
        let src = Fixtures.root.appendingPathComponent("tokenizers/spm-only")
        for f in ["tokenizer.model", "special_tokens_map.json", "added_tokens.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: temp.url.appendingPathComponent(f))
        }
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("tokenizer_config.json"))) as? [String: Any])
        config["added_tokens_decoder"] = nil
        config["bos_token"] = "<unk>"  // the map's "<s>" wins, as in transformers
        try JSONSerialization.data(withJSONObject: config).write(to: temp.url.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try Tokenizer(huggingFaceDirectory: temp.url.path)
        XCTAssertEqual(tokenizer.bosTokenId, 1)
        XCTAssertTrue(tokenizer.notes.contains { $0.contains("special_tokens_map.json") }, tokenizer.notes.description)
        let g = try golden("spm-only")
        let problems = mismatches(tokenizer, g.cases, label: "legacy files")
        XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(30).joined(separator: "\n"))
    }
}
