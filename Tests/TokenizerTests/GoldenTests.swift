import Foundation
import ModelFormats
import TestSupport
import Tokenizer
import XCTest

/// Golden ids recorded by tools/make_tokenizer_fixtures.py from transformers (HF directories)
/// and from sentencepiece / transformers for the GGUF copies of the same tokenizers.
final class GoldenTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let idsNoBOS: [Int]
        let decoded: String?
        let roundTrips: Bool
        let idsNoParseSpecial: [Int]?
    }

    struct Golden: Decodable {
        let family: String
        let hf: String
        let gguf: String
        let hfCases: [Case]
        let ggufCases: [Case]?

        enum CodingKeys: String, CodingKey { case family, hf, gguf, hfCases, ggufCases }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            family = try c.decode(String.self, forKey: .family)
            hf = try c.decode(String.self, forKey: .hf)
            gguf = try c.decode(String.self, forKey: .gguf)
            hfCases = try c.decode([Case].self, forKey: .hfCases)
            ggufCases = try? c.decode([Case].self, forKey: .ggufCases)  // "same" → nil
        }
    }

    static let families = ["qwen2", "llama3", "olmoe", "deepseek-v3", "deepseek-llm", "gpt-oss", "spm",
                           "model-mixtral", "model-qwen2moe", "model-qwen3moe", "model-olmoe"]

    static func golden(_ name: String) throws -> Golden {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/\(name).json"))
        return try JSONDecoder().decode(Golden.self, from: data)
    }

    /// Checks every case; returns one line per mismatch so a failure shows all of them at once.
    static func check(_ tokenizer: Tokenizer, _ cases: [Case], label: String, checkDecoded: Bool) -> [String] {
        var problems: [String] = []
        for c in cases {
            let t = c.text.debugDescription.prefix(60)
            let ids = tokenizer.encode(c.text)
            if ids != c.ids { problems.append("\(label) encode \(t): got \(ids) expected \(c.ids)") }
            let plain = tokenizer.encode(c.text, addSpecialTokens: false)
            if plain != c.idsNoBOS { problems.append("\(label) encode(no BOS) \(t): got \(plain) expected \(c.idsNoBOS)") }
            if let expected = c.idsNoParseSpecial {
                let got = tokenizer.encode(c.text, addSpecialTokens: false, parseSpecial: false)
                if got != expected { problems.append("\(label) encode(parseSpecial false) \(t): got \(got) expected \(expected)") }
            }
            let text = tokenizer.decode(c.idsNoBOS)
            if checkDecoded, let d = c.decoded, text != d {
                problems.append("\(label) decode \(t): got \(text.debugDescription) expected \(d.debugDescription)")
            }
            if c.roundTrips && text != c.text {
                problems.append("\(label) round trip \(t): got \(text.debugDescription)")
            }
        }
        return problems
    }

    func testHuggingFaceDirectoriesMatchTransformers() throws {
        var problems: [String] = []
        var checked = 0
        for name in Self.families {
            let g = try Self.golden(name)
            let tokenizer = try Tokenizer(huggingFaceDirectory: Fixtures.path(g.hf))
            problems += Self.check(tokenizer, g.hfCases, label: "\(name) hf", checkDecoded: true)
            checked += g.hfCases.count
        }
        XCTAssertGreaterThan(checked, 400)
        XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(40).joined(separator: "\n"))
    }

    func testGGUFFilesMatchReference() throws {
        var problems: [String] = []
        for name in Self.families {
            let g = try Self.golden(name)
            let tokenizer = try Tokenizer(gguf: GGUFFile(path: Fixtures.path(g.gguf)))
            // Byte-level GGUFs carry the same vocabulary as the HF directory, so the same ids and text.
            problems += Self.check(tokenizer, g.ggufCases ?? g.hfCases, label: "\(name) gguf", checkDecoded: g.ggufCases == nil)
        }
        XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(40).joined(separator: "\n"))
    }
}
