import ChatTemplate
import Foundation
import Generation
import TestSupport
import Testing

@testable import Serving

/// `reasoning_content` (llama.cpp's server and vLLM name it so): present for a harmony model's
/// analysis, absent otherwise, so other models' responses are unchanged.
struct ReasoningFieldTests {
    func json(_ data: Data) throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any]) }

    @Test func wholeResponseCarriesReasoningOnlyWhenThereIsSome() throws {
        let builder = ResponseBuilder(endpoint: .chatCompletions, model: "m")
        var outcome = CompletionOutcome(text: "42", finishReason: "stop", promptTokens: 3, completionTokens: 9, reusedTokens: 0)
        let plain = try json(builder.complete(outcome))
        let plainMessage = try #require(((plain["choices"] as? [[String: Any]])?.first?["message"]) as? [String: Any])
        #expect(plainMessage["content"] as? String == "42")
        #expect(plainMessage["reasoning_content"] == nil)

        outcome.reasoning = "Add them."
        let body = try json(builder.complete(outcome))
        let message = try #require(((body["choices"] as? [[String: Any]])?.first?["message"]) as? [String: Any])
        #expect(message["content"] as? String == "42")
        #expect(message["reasoning_content"] as? String == "Add them.")
    }

    @Test func streamedReasoningGoesToItsOwnDeltaField() throws {
        let builder = ResponseBuilder(endpoint: .chatCompletions, model: "m")
        let chunk = try json(builder.chunk(text: "think", first: true, reasoning: true))
        let delta = try #require(((chunk["choices"] as? [[String: Any]])?.first?["delta"]) as? [String: Any])
        #expect(delta["reasoning_content"] as? String == "think")
        #expect(delta["content"] == nil)
        #expect(delta["role"] as? String == "assistant")
        let text = try json(builder.chunk(text: "answer"))
        let textDelta = try #require(((text["choices"] as? [[String: Any]])?.first?["delta"]) as? [String: Any])
        #expect(textDelta["content"] as? String == "answer")
        #expect(textDelta["reasoning_content"] == nil)
    }

    /// A live server on the harmony test model (tools/make_harmony_model.py): analysis "Think",
    /// final "Hello".
    @Test func harmonyModelAnswersWithReasoningContent() async throws {
        let session = try Session(modelPath: TestSupport.Fixtures.path("harmony/model"))
        var defaults = GenerationOptions.greedy
        defaults.maxTokens = 40
        let body = #"{"messages": [{"role": "user", "content": "Hi"}]}"#
        let streamBody = #"{"messages": [{"role": "user", "content": "Hi"}], "stream": true}"#
        let (whole, streamed) = try await TestServer.with(defaults: defaults, session: session) { server in
            (try await server.post("/v1/chat/completions", body), try await server.post("/v1/chat/completions", streamBody))
        }
        let message = try #require(((whole.json["choices"] as? [[String: Any]])?.first?["message"]) as? [String: Any])
        #expect(message["content"] as? String == "Hello")
        #expect(message["reasoning_content"] as? String == "Think")
        let deltas = Events(streamed.body).chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"]) as? [String: Any] }
        #expect(deltas.compactMap { $0["reasoning_content"] as? String }.joined() == "Think")
        #expect(deltas.compactMap { $0["content"] as? String }.joined() == "Hello")
    }

    @Test func reasoningEffortReachesTheTemplate() throws {
        let body = #"{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"}"#
        let request = try CompletionRequest(endpoint: .chatCompletions, body: Data(body.utf8))
        let options = request.options(defaults: GenerationOptions())
        guard case let .string(effort)? = options.templateVariables["reasoning_effort"] else {
            Issue.record("reasoning_effort not set")
            return
        }
        #expect(effort == "high")
        let bad = #"{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "max"}"#
        #expect(throws: APIError.self) { try CompletionRequest(endpoint: .chatCompletions, body: Data(bad.utf8)) }
        let completion = #"{"prompt": "hi", "reasoning_effort": "low"}"#
        #expect(throws: APIError.self) { try CompletionRequest(endpoint: .completions, body: Data(completion.utf8)) }
    }

    @Test func assistantReasoningIsAcceptedInRequests() throws {
        let body = #"{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning_content": "add"}, {"role": "user", "content": "3+3?"}]}"#
        let request = try CompletionRequest(endpoint: .chatCompletions, body: Data(body.utf8))
        guard case let .messages(messages) = request.prompt else { Issue.record("not a chat prompt"); return }
        #expect(messages[1].thinking == "add")
        #expect(messages[1].content == "4")
        let userReasoning = #"{"messages": [{"role": "user", "content": "x", "reasoning_content": "no"}]}"#
        #expect(throws: APIError.self) { try CompletionRequest(endpoint: .chatCompletions, body: Data(userReasoning.utf8)) }
    }
}
