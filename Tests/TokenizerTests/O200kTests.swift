import Foundation
import ModelFormats
import TestSupport
import Tokenizer
import XCTest

/// GPT-OSS's real tokenizer (tiktoken `o200k_harmony`, 200k vocabulary + harmony specials)
/// against tiktoken's own ids, recorded by tools/make_o200k_fixtures.py. The 28 MB
/// tokenizer.json and 13 MB GGUF are not committed: the script writes them (from the
/// `bpe-openai` PyPI package's copy of `o200k_base`) and the test runs when `MOE_O200K_DIR`
/// names that directory; otherwise it is skipped. The small trained GPT-OSS-style tokenizer
/// in `GoldenTests` covers the same configuration on every run.
final class O200kTests: XCTestCase {
    struct Recorded: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int]
            let decoded: String
            let idsNoParseSpecial: [Int]?
        }
        let vocab: Int
        let cases: [Case]
    }

    func check(_ tokenizer: Tokenizer, label: String) throws -> [String] {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizers/o200k-harmony.json"))
        let recorded = try JSONDecoder().decode(Recorded.self, from: data)
        XCTAssertGreaterThan(recorded.cases.count, 50)
        var problems: [String] = []
        for c in recorded.cases {
            let t = c.text.debugDescription.prefix(50)
            let ids = tokenizer.encode(c.text, addSpecialTokens: false)
            if ids != c.ids { problems.append("\(label) \(t): got \(ids) expected \(c.ids)") }
            if let expected = c.idsNoParseSpecial {
                let got = tokenizer.encode(c.text, addSpecialTokens: false, parseSpecial: false)
                if got != expected { problems.append("\(label) no-special \(t): got \(got) expected \(expected)") }
            }
            let text = tokenizer.decode(c.ids)
            if text != c.decoded { problems.append("\(label) decode \(t): got \(text.debugDescription)") }
        }
        return problems
    }

    func testRealO200kHarmonyMatchesTiktoken() throws {
        guard let dir = ProcessInfo.processInfo.environment["MOE_O200K_DIR"], !dir.isEmpty else {
            throw XCTSkip("set MOE_O200K_DIR to the output of tools/make_o200k_fixtures.py")
        }
        let hf = try Tokenizer(huggingFaceDirectory: dir + "/hf")
        let gguf = try Tokenizer(gguf: GGUFFile(path: dir + "/tokenizer.gguf"))
        let problems = try check(hf, label: "tokenizer.json") + check(gguf, label: "gguf")
        XCTAssert(problems.isEmpty, "\(problems.count) mismatches:\n" + problems.prefix(30).joined(separator: "\n"))
    }
}
