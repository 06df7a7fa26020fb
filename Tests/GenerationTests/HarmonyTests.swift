import Foundation
import ChatTemplate
import TestSupport
import Tokenizer
import XCTest

@testable import Generation

/// Harmony output channels: the parser against OpenAI's own (`openai_harmony.StreamableParser`,
/// recorded by tools/make_harmony_fixtures.py), and how a reply's tokens become final text and
/// reasoning. The token ids come from the small GPT-OSS-style fixture tokenizer, which has the
/// harmony special tokens; the recorded messages are text, independent of the vocabulary.
final class HarmonyTests: XCTestCase {
    struct Recorded: Decodable {
        struct Message: Decodable {
            let channel: String?
            let recipient: String?
            let contentType: String?
            let text: String
            let complete: Bool
        }
        struct Case: Decodable {
            let text: String
            let cut: Bool
            let messages: [Message]
        }
        let cases: [Case]
    }

    static func tokenizer() throws -> Tokenizer { try Tokenizer(huggingFaceDirectory: Fixtures.path("tokenizers/gpt-oss/hf")) }

    func testParserMatchesOpenAIHarmony() throws {
        let tokenizer = try Self.tokenizer()
        let tokens = try XCTUnwrap(HarmonyTokens(tokenizer: tokenizer))
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("harmony/parse-cases.json"))
        let recorded = try JSONDecoder().decode(Recorded.self, from: data)
        XCTAssertEqual(recorded.cases.count, 14)
        for c in recorded.cases {
            let label = c.text.debugDescription.prefix(70)
            let ids = tokenizer.encode(c.text, addSpecialTokens: false)
            var parser = HarmonyParser(tokens: tokens, tokenizer: tokenizer)
            var streamed: [Int: String] = [:]
            for id in ids {
                if let piece = parser.append(id) { streamed[parser.messages.count - 1, default: ""] += piece.text }
            }
            if let piece = parser.finish() { streamed[parser.messages.count - 1, default: ""] += piece.text }
            XCTAssertEqual(parser.finished, !c.cut && (c.text.hasSuffix("<|return|>") || c.text.hasSuffix("<|call|>")), "\(label)")
            XCTAssertEqual(parser.messages.count, c.messages.count, "\(label)")
            for (i, (got, want)) in zip(parser.messages, c.messages).enumerated() {
                XCTAssertEqual(got.channel, want.channel ?? "final", "\(label) #\(i)")
                XCTAssertEqual(got.recipient, want.recipient, "\(label) #\(i)")
                XCTAssertEqual(got.contentType, want.contentType, "\(label) #\(i)")
                XCTAssertEqual(got.text, want.text, "\(label) #\(i)")
                XCTAssertEqual(got.complete, want.complete, "\(label) #\(i)")
                XCTAssertEqual(streamed[i] ?? "", want.text, "\(label) #\(i): streamed pieces join to the message")
            }
        }
    }

    /// What a session reports for a harmony reply: the final channel as text (stop strings
    /// apply to it only), the rest as reasoning with one labelled start per message.
    func testReplySplitsFinalAndReasoning() throws {
        let tokenizer = try Self.tokenizer()
        let harmony = try XCTUnwrap(HarmonyTokens(tokenizer: tokenizer))
        let text = "<|channel|>analysis<|message|>Think STOP here.<|end|><|start|>assistant<|channel|>commentary<|message|>Preamble.<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>Answer 42 STOP tail<|return|>"
        let ids = tokenizer.encode(text, addSpecialTokens: false)

        func run(stop: [String]) -> (GenerationResult, [ReasoningPiece], String) {
            let reply = ReplyText(tokenizer: tokenizer, harmony: harmony, stop: stop)
            var result = GenerationResult()
            var pieces: [ReasoningPiece] = []
            var shown = ""
            for id in ids {
                if reply.endOfTurnTokens.contains(id) {
                    reply.endOfTurn(id, into: &result, onReasoning: { pieces.append($0) }, onText: { shown += $0 })
                    break
                }
                reply.append(id, into: &result, onReasoning: { pieces.append($0) }, onText: { shown += $0 })
                if reply.stopped { break }
            }
            reply.finish(into: &result, onReasoning: { pieces.append($0) }, onText: { shown += $0 })
            return (result, pieces, shown)
        }
        let (result, pieces, shown) = run(stop: [])
        XCTAssertEqual(result.text, "Answer 42 STOP tail")
        XCTAssertEqual(shown, result.text)
        XCTAssertEqual(result.reasoning, "Think STOP here.\n\nPreamble.")
        XCTAssertEqual(pieces.filter(\.startsMessage).map(\.channel), ["analysis", "commentary"])
        XCTAssertEqual(pieces.map(\.text).joined(), "Think STOP here.Preamble.")
        XCTAssertEqual(result.messages.map(\.channel), ["analysis", "commentary", "final"])
        XCTAssert(result.messages.allSatisfy(\.complete))

        let (stopped, _, shownStopped) = run(stop: [" STOP"])
        XCTAssertEqual(stopped.text, "Answer 42", "the stop string in the analysis does not count")
        XCTAssertEqual(shownStopped, "Answer 42")
        XCTAssertEqual(stopped.reasoning, "Think STOP here.\n\nPreamble.")

        XCTAssertEqual(harmony.stopTokens, Set([tokenizer.tokens.firstIndex(of: "<|return|>")!, tokenizer.tokens.firstIndex(of: "<|call|>")!]))
    }

    /// A model that is not harmony (or a chat turn that is not) keeps its text as the decoder gives it.
    func testPlainRepliesUnaffected() throws {
        let tokenizer = try Self.tokenizer()
        let text = "<|channel|>analysis<|message|>x<|end|> plain 🚀"
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        let reply = ReplyText(tokenizer: tokenizer, harmony: nil, stop: [])
        var result = GenerationResult()
        for id in ids { reply.append(id, into: &result, onReasoning: { _ in XCTFail("no reasoning") }, onText: { _ in }) }
        reply.finish(into: &result, onReasoning: { _ in }, onText: { _ in })
        XCTAssertEqual(result.text, tokenizer.decode(ids, skipSpecialTokens: true))
        XCTAssertEqual(result.reasoning, "")
        XCTAssert(result.messages.isEmpty)

        // Harmony is switched on only by a harmony template with a harmony vocabulary.
        XCTAssertNil(HarmonyTokens(tokenizer: tokenizer, template: "{{ messages[0].content }}"))
        XCTAssertNotNil(HarmonyTokens(tokenizer: tokenizer, template: "<|start|>{{ x }}<|channel|>final<|message|>"))
        let qwen = try Tokenizer(huggingFaceDirectory: Fixtures.path("tokenizers/qwen2/hf"))
        XCTAssertNil(HarmonyTokens(tokenizer: qwen, template: "<|channel|>"))
    }

    /// Malformed and random sequences never trap; text outside any header becomes final text
    /// once it is plainly not a header; the reasoning/final split follows the messages.
    func testMalformedSequencesAreTolerated() throws {
        let tokenizer = try Self.tokenizer()
        let harmony = try XCTUnwrap(HarmonyTokens(tokenizer: tokenizer))
        let noHeader = String(repeating: "The model ignored the format. ", count: 12)
        var parser = HarmonyParser(tokens: harmony, tokenizer: tokenizer)
        var shown = ""
        for id in tokenizer.encode(noHeader, addSpecialTokens: false) { shown += parser.append(id)?.text ?? "" }
        shown += parser.finish()?.text ?? ""
        XCTAssertEqual(shown, noHeader)
        XCTAssertEqual(parser.messages.map(\.channel), ["final"])

        // <|end|> with no message, <|message|> with no header, a second <|start|> inside a message.
        parser = HarmonyParser(tokens: harmony, tokenizer: tokenizer)
        let odd = "<|end|><|message|>bare<|start|>assistant<|channel|>analysis<|message|>cut<|start|>assistant<|channel|>final<|message|>ok<|return|>after"
        for id in tokenizer.encode(odd, addSpecialTokens: false) { _ = parser.append(id) }
        XCTAssertEqual(parser.messages.map(\.channel), ["final", "analysis", "final"])
        XCTAssertEqual(parser.messages.map(\.text), ["bare", "cut", "ok"])
        XCTAssertEqual(parser.messages.map(\.complete), [false, false, true])
        XCTAssertTrue(parser.finished)

        var rng = Xoshiro256StarStar(seed: 7)
        let specials = [harmony.start, harmony.end, harmony.message, harmony.channel]
        for _ in 0..<200 {
            var p = HarmonyParser(tokens: harmony, tokenizer: tokenizer)
            for _ in 0..<Int.random(in: 0..<80, using: &rng) {
                let id = Bool.random(using: &rng) ? specials.randomElement(using: &rng)! : Int.random(in: -3..<tokenizer.vocabularySize + 3, using: &rng)
                _ = p.append(id)
            }
            _ = p.finish()
        }
    }
}

/// A harmony turn joins the history as content + thinking; rendered again for the next turn,
/// the analysis is gone exactly as transformers renders the same messages (harmony-cases.json,
/// conversation "thinking-multi").
final class HarmonyHistoryTests: XCTestCase {
    func testNextTurnDropsEarlierAnalysisAsTransformers() throws {
        let dir = Fixtures.root.appendingPathComponent("chat-templates")
        let template = try ChatTemplate(String(contentsOf: dir.appendingPathComponent("gpt-oss.jinja"), encoding: .utf8))
        guard case let .object(root) = try TemplateJSON.parse(String(contentsOf: dir.appendingPathComponent("harmony-cases.json"), encoding: .utf8)),
              case let .array(cases)? = root["cases"] else { return XCTFail("no cases") }
        let recorded = cases.first { c in
            guard case let .object(o) = c, case .string("thinking-multi")? = o["conversation"], case .none? = o["tools"],
                  case let .object(v)? = o["variables"], v.count == 0, case .bool(true)? = o["add_generation_prompt"] else { return false }
            return true
        }
        guard case let .object(o)? = recorded, case let .string(expected)? = o["expected"] else { return XCTFail("case missing") }

        var result = GenerationResult()
        result.text = "4"
        result.reasoning = "Simple arithmetic: 4."
        let history: [ChatMessage] = [.system("You are terse."), .user("What is 2+2?"), Session.reply(result), .user("And 3+3?")]
        XCTAssertEqual(history[2].thinking, "Simple arithmetic: 4.")
        let date = ISO8601DateFormatter().date(from: "2025-06-01T09:30:00Z")!
        let rendered = try template.render(messages: history, addGenerationPrompt: true, bosToken: "<|startoftext|>", eosToken: "<|return|>", now: date)
        XCTAssertEqual(rendered, expected)
        XCTAssertFalse(rendered.contains("Simple arithmetic"))
    }
}
