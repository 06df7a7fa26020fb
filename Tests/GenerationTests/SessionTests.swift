import Foundation
import ChatTemplate
import Executor
import Generation
import Runtime
import Tokenizer
import TestSupport
import XCTest

/// Generation mechanics on the tiny random fixture models (gibberish text, real tokenizers).
final class SessionTests: XCTestCase {
    static let modelPath = Fixtures.path("qwen3moe/model-f32.gguf")

    func makeSession(context: Int? = nil, system: String? = nil) throws -> Session {
        let model = try Model(path: Self.modelPath, options: ExecutorOptions(threads: 2, kvCacheType: .f32))
        return try Session(model: model, tokenizer: try Tokenizer(path: Self.modelPath), systemPrompt: system, contextLength: context)
    }

    func greedy(_ maxTokens: Int) -> GenerationOptions {
        var o = GenerationOptions.greedy
        o.maxTokens = maxTokens
        o.stopAtEndOfSequence = false
        return o
    }

    func testCompletionIsReproducibleAndStreamsEverything() throws {
        let session = try makeSession()
        var pieces: [String] = []
        let r1 = try session.complete(prompt: "Once upon a time", options: greedy(12)) { pieces.append($0) }
        XCTAssertEqual(r1.generatedTokens, 12)
        XCTAssertEqual(r1.finishReason, .maxTokens)
        XCTAssertEqual(pieces.joined(), r1.text)
        XCTAssertFalse(r1.text.isEmpty)
        let r2 = try session.complete(prompt: "Once upon a time", options: greedy(12)) { _ in }
        XCTAssertEqual(r2.text, r1.text)
        XCTAssertEqual(r2.reusedTokens, r2.promptTokens - 1)  // same prompt: all but the last token reused

        var sampled = GenerationOptions()
        sampled.seed = 1234
        sampled.maxTokens = 16
        sampled.stopAtEndOfSequence = false
        let a = try session.complete(prompt: "Hello", options: sampled) { _ in }
        let b = try makeSession().complete(prompt: "Hello", options: sampled) { _ in }
        XCTAssertEqual(a.text, b.text)
        XCTAssertEqual(a.seed, 1234)
    }

    func testStopStringAndStopTokens() throws {
        let session = try makeSession()
        let full = try session.complete(prompt: "The answer is", options: greedy(24)) { _ in }
        let scalars = Array(full.text.unicodeScalars)
        XCTAssertGreaterThan(scalars.count, 6)
        // A stop string taken from the middle of the greedy text: the result is the text before its first occurrence.
        var stop = ""
        stop.unicodeScalars.append(contentsOf: scalars[3..<6])
        var options = greedy(24)
        options.stop = [stop]
        var streamed = ""
        let r = try session.complete(prompt: "The answer is", options: options) { streamed += $0 }
        XCTAssertEqual(r.finishReason, .stopString)
        XCTAssertEqual(r.text, String(full.text[..<full.text.range(of: stop)!.lowerBound]))
        XCTAssertEqual(streamed, r.text)

        // A token that ends generation is not emitted (the EOS path).
        let ids = try session.model.generate(tokens: session.tokenizer.encode("The answer is"), maxNewTokens: 3)
        XCTAssertEqual(ids.count, 3)
        var byToken = greedy(24)
        byToken.stopTokens = [ids[2]]
        let t = try session.complete(prompt: "The answer is", options: byToken) { _ in }
        if !ids[0..<2].contains(ids[2]) {
            XCTAssertEqual(t.finishReason, .endOfSequence)
            XCTAssertEqual(t.generatedTokens, 2)
            XCTAssertEqual(t.text, session.tokenizer.decode(Array(ids[0..<2]), skipSpecialTokens: true))
        }
    }

    func testChatReusesTheCacheAndMatchesAFreshEvaluation() throws {
        let a = try makeSession(system: "You are a test.")
        let first = try a.respond(to: "Hi", options: greedy(8)) { _ in }
        XCTAssertEqual(first.reusedTokens, 0)
        let second = try a.respond(to: "Tell me more", options: greedy(8)) { _ in }
        XCTAssertGreaterThan(second.reusedTokens, first.promptTokens / 2)
        XCTAssertEqual(a.history.map(\.role), ["system", "user", "assistant", "user", "assistant"])
        XCTAssertTrue(a.usesFallbackTemplate)  // the fixture ships no template: ChatML

        let b = try makeSession(system: "You are a test.")
        _ = try b.respond(to: "Hi", options: greedy(8)) { _ in }
        b.discardCache()
        let fresh = try b.respond(to: "Tell me more", options: greedy(8)) { _ in }
        XCTAssertEqual(fresh.reusedTokens, 0)
        XCTAssertEqual(fresh.text, second.text)
        XCTAssertEqual(fresh.promptTokens, second.promptTokens)

        a.reset()
        XCTAssertEqual(a.history, [.system("You are a test.")])
    }

    /// What a server does: render a whole conversation to tokens on every request and generate
    /// from them — history untouched, the cache reused when a conversation extends the last, the
    /// same reply as the equivalent chat turn.
    func testWholeConversationsAsTokens() throws {
        let chat = try makeSession(system: "You are a test.")
        let turn = try chat.respond(to: "Hi", options: greedy(8)) { _ in }
        let server = try makeSession()
        let messages: [ChatMessage] = [.system("You are a test."), .user("Hi")]
        let first = try server.generate(tokens: try server.chatPrompt(messages), options: greedy(8)) { _ in }
        XCTAssertEqual(first.text, turn.text)
        XCTAssertEqual(first.promptTokens, turn.promptTokens)
        XCTAssertTrue(server.history.isEmpty)
        let extended = messages + [.assistant(first.text), .user("More")]
        let second = try server.generate(tokens: try server.chatPrompt(extended), options: greedy(8)) { _ in }
        XCTAssertGreaterThan(second.reusedTokens, first.promptTokens / 2)
        XCTAssertEqual(server.completionPrompt("Once upon a time"), server.tokenizer.encode("Once upon a time"))

        XCTAssertThrowsError(try server.generate(tokens: [], options: greedy(1)) { _ in }) { XCTAssertEqual($0 as? GenerationError, .emptyPrompt) }
        let short = try makeSession(context: 8)
        XCTAssertThrowsError(try short.generate(tokens: Array(repeating: 1, count: 8), options: greedy(1)) { _ in }) {
            XCTAssertEqual($0 as? GenerationError, .promptTooLong(tokens: 8, context: 8))
        }
    }

    func testOwnTemplateIsUsed() throws {
        let model = try Model(path: Self.modelPath, options: ExecutorOptions(threads: 2))
        let template = try ChatTemplate("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        let session = try Session(model: model, tokenizer: try Tokenizer(path: Self.modelPath), template: template)
        XCTAssertFalse(session.usesFallbackTemplate)
        let r = try session.respond(to: "Hi", options: greedy(2)) { _ in }
        XCTAssertEqual(r.generatedTokens, 2)
    }

    func testLimitsAndErrors() throws {
        let session = try makeSession(context: 48)
        XCTAssertThrowsError(try session.complete(prompt: "", options: greedy(2)) { _ in }) { XCTAssertEqual($0 as? GenerationError, .emptyPrompt) }
        let long = String(repeating: "lorem ipsum dolor ", count: 40)
        XCTAssertThrowsError(try session.respond(to: long, options: greedy(2)) { _ in }) { error in
            guard case let GenerationError.promptTooLong(tokens, context)? = error as? GenerationError else { return XCTFail("\(error)") }
            XCTAssertGreaterThan(tokens, 48)
            XCTAssertEqual(context, 48)
        }
        XCTAssertTrue(session.history.isEmpty)
        // Older turns are dropped to make room.
        for i in 0..<6 { _ = try session.respond(to: "turn \(i) text", options: greedy(4)) { _ in } }
        XCTAssertGreaterThan(session.lastResult!.droppedTurns, 0)
        XCTAssertEqual(session.history.last?.role, "assistant")
        // Generation stops at the context limit.
        let r = try session.complete(prompt: "a b c", options: greedy(1000)) { _ in }
        XCTAssertEqual(r.finishReason, .contextFull)
    }

    func testStreamCancellationKeepsTheSessionUsable() async throws {
        let session = try makeSession()
        var received = 0
        for try await _ in session.respond(to: "Count to a hundred", options: greedy(200)) {
            received += 1
            if received == 2 { break }  // ends the stream: generation is cancelled
        }
        // The next call waits for the cancelled one, then runs normally.
        var text = ""
        for try await piece in session.respond(to: "Again", options: greedy(3)) { text += piece }
        XCTAssertEqual(session.history.map(\.role), ["user", "assistant", "user", "assistant"])
        XCTAssertLessThan(session.history[1].content.count, 200 * 8)
        XCTAssertEqual(session.history[3].content, text)

        let options = greedy(500)
        let task = Task { () -> Int in
            var n = 0
            for try await _ in session.generate(prompt: "Tick", options: options) { n += 1; if n == 1 { withUnsafeCurrentTask { $0?.cancel() } } }
            return n
        }
        let n = try await task.value
        XCTAssertLessThan(n, 500)
        _ = try session.complete(prompt: "after", options: greedy(1)) { _ in }
        XCTAssertEqual(session.lastResult?.generatedTokens, 1)
    }

    /// Streams cancelled mid-reply on a paged model whose loader threads prefetch (for
    /// ThreadSanitizer: cancellation racing loads and prefetches); afterwards the model still
    /// gives the text the resident one gives.
    func testCancellingPagedPrefetchingRunsLeavesTheModelConsistent() async throws {
        let resident = try makeSession()
        let expected = try resident.complete(prompt: "Once upon a time", options: greedy(8)) { _ in }.text
        let paged = try Model(path: Self.modelPath, options: ExecutorOptions(threads: 2, kvCacheType: .f32),
                              memory: .init(prefetch: .lookahead, expertCache: .fraction(0.5)))
        let session = try Session(model: paged, tokenizer: resident.tokenizer)
        for round in 0..<3 {
            var received = 0
            for try await _ in session.respond(to: "Count to a hundred", options: greedy(200)) {
                received += 1
                if received == 1 + round { break }
            }
        }
        let fresh = try Session(model: paged, tokenizer: resident.tokenizer)
        XCTAssertEqual(try fresh.complete(prompt: "Once upon a time", options: greedy(8)) { _ in }.text, expected)
    }

    /// Calls on one session from several tasks run one at a time: each stream gets the text a
    /// call alone gets, and two sessions sharing one model interleave without changing it.
    func testConcurrentStreamsOnOneSessionAndOneModel() async throws {
        let session = try makeSession()
        let options = greedy(10)
        let alone = try session.complete(prompt: "Once upon a time", options: options) { _ in }.text
        let other = try Session(model: session.model, tokenizer: session.tokenizer)
        try await withThrowingTaskGroup(of: String.self) { group in
            for s in [session, session, other, other] {
                group.addTask {
                    var text = ""
                    for try await piece in s.generate(prompt: "Once upon a time", options: options) { text += piece }
                    return text
                }
            }
            for try await text in group { XCTAssertEqual(text, alone) }
        }
    }
}
