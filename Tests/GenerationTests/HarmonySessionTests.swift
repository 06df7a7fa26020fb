import ChatTemplate
import Foundation
import Generation
import TestSupport
import XCTest

/// A whole harmony chat through `Session`, on a tiny Mixtral built so that its greedy reply is
/// `<|channel|>analysis<|message|>Think<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>`
/// (tools/make_harmony_model.py; the reference turns are transformers' `generate`).
final class HarmonySessionTests: XCTestCase {
    struct Reference: Decodable {
        struct Turn: Decodable {
            let promptTokens: Int
            let generated: [Int]
            let text: String
            let renderedPrompt: String?
        }
        struct Channel: Decodable { let channel: String; let text: String }
        let turns: [Turn]
        let harmonyChannels: [Channel]
    }

    static let modelPath = Fixtures.path("harmony/model")

    func testChatTurnsSplitFinalFromReasoningAsTransformersGenerates() throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("harmony/model-reference.json")))
        let analysis = try XCTUnwrap(reference.harmonyChannels.first { $0.channel == "analysis" }).text
        let final = try XCTUnwrap(reference.harmonyChannels.first { $0.channel == "final" }).text
        let session = try Session(modelPath: Self.modelPath)
        XCTAssertNotNil(session.harmony)
        var options = GenerationOptions.greedy
        options.maxTokens = 40

        var shown = "", reasoning: [ReasoningPiece] = []
        let first = try session.respond(to: "Hi", options: options, onReasoning: { reasoning.append($0) }, onText: { shown += $0 })
        XCTAssertEqual(first.promptTokens, reference.turns[0].promptTokens)
        XCTAssertEqual(first.text, final)
        XCTAssertEqual(shown, final)
        XCTAssertEqual(first.reasoning, analysis)
        XCTAssertEqual(reasoning.map(\.text).joined(), analysis)
        XCTAssertEqual(reasoning.first?.startsMessage, true)
        XCTAssertEqual(first.finishReason, .endOfSequence)
        // transformers' list ends with <|return|>, which we do not count as generated.
        XCTAssertEqual(first.generatedTokens, reference.turns[0].generated.count - 1)
        XCTAssertEqual(first.messages.map(\.channel), reference.harmonyChannels.map(\.channel))
        XCTAssertEqual(session.history.last, ChatMessage(role: "assistant", content: final, thinking: analysis))

        // The next turn renders the history as transformers does (the analysis dropped) and
        // reuses the cache up to where it departs from the generated tokens.
        let second = try session.respond(to: "Again", options: options, onReasoning: { _ in }, onText: { _ in })
        XCTAssertEqual(second.promptTokens, reference.turns[1].promptTokens)
        XCTAssertGreaterThan(second.reusedTokens, reference.turns[0].promptTokens - 1)
        XCTAssertEqual(second.text, final)
        // The template puts the date into the system header (strftime_now): render on the day
        // transformers rendered the reference, read from its prompt, not on today's.
        let expected = try XCTUnwrap(reference.turns[1].renderedPrompt)
        let day = try XCTUnwrap(expected.range(of: #"Current date: \d{4}-\d{2}-\d{2}"#, options: .regularExpression).map {
            String(expected[$0].suffix(10))
        }, "the reference prompt names its date")
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try XCTUnwrap(TimeZone(identifier: "UTC"))
        let parts = day.split(separator: "-").compactMap { Int($0) }
        let noon = try XCTUnwrap(calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2], hour: 12)))
        let rendered = try session.template.render(messages: Array(session.history.dropLast()), addGenerationPrompt: true,
                                                   bosToken: "<|startoftext|>", eosToken: "<|return|>", now: noon)
        XCTAssertEqual(rendered, expected)

        // The same model without channels (a raw continuation of the same tokens) shows nothing
        // of the structure but the text, as before.
        let prompt = try session.chatPrompt([.user("Hi")])
        let raw = try session.generate(tokens: prompt, options: options, onText: { _ in })
        let withoutSpecials = reference.turns[0].text.replacingOccurrences(of: #"<\|[a-z]+\|>"#, with: "", options: .regularExpression)
        XCTAssertEqual(raw.text, withoutSpecials)
        XCTAssertEqual(raw.reasoning, "")
    }
}
