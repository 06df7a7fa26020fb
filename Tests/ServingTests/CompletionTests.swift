import ChatTemplate
import Foundation
import Generation
import Serving
import Testing

/// Answers of the server against the library's: greedy output through HTTP is what `Session`
/// gives for the same prompt, streamed or not.
@Suite(.serialized) struct CompletionTests {
    @Test func chatEqualsSession() async throws {
        let expected = try Demo.session().respond(to: "def fibonacci(n):", options: Demo.greedy, onText: { _ in })
        let reply = try await TestServer.with { server in try await server.post("/v1/chat/completions", chat([("user", "def fibonacci(n):")])) }
        #expect(reply.status == 200)
        #expect(reply.headers.first(name: "x-served-by") == "local")
        let choice = try #require((reply.json["choices"] as? [[String: Any]])?.first)
        let message = try #require(choice["message"] as? [String: Any])
        #expect(message["role"] as? String == "assistant")
        #expect(message["content"] as? String == expected.text)
        #expect(choice["finish_reason"] as? String == (expected.finishReason == .maxTokens ? "length" : "stop"))
        let usage = try #require(reply.json["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == expected.promptTokens)
        #expect(usage["completion_tokens"] as? Int == expected.generatedTokens)
        #expect(usage["total_tokens"] as? Int == expected.promptTokens + expected.generatedTokens)
        #expect(reply.json["object"] as? String == "chat.completion")
        #expect(reply.json["model"] as? String == "demo")
    }

    @Test func completionStreamEqualsSession() async throws {
        let expected = try Demo.session().complete(prompt: "import os\n", options: Demo.greedy, onText: { _ in })
        let reply = try await TestServer.with { server in
            try await server.post("/v1/completions", completion("import os\n", extra: ["stream": true, "stream_options": ["include_usage": true]]))
        }
        #expect(reply.status == 200)
        #expect(reply.headers.first(name: "content-type") == "text/event-stream")
        let events = Events(reply.body)
        #expect(events.done)
        #expect(events.text == expected.text)
        #expect(events.chunks.allSatisfy { $0["object"] as? String == "text_completion" })
        let usage = try #require(events.chunks.last?["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == expected.generatedTokens)
        #expect((events.chunks.last?["choices"] as? [Any])?.isEmpty == true)
    }

    @Test func chatStreamMatchesWholeAnswer() async throws {
        let messages = [("system", "Answer in Python."), ("user", "Sort a list.")]
        let (whole, streamed) = try await TestServer.with { server in
            (try await server.post("/v1/chat/completions", chat(messages)),
             try await server.post("/v1/chat/completions", chat(messages, extra: ["stream": true])))
        }
        let events = Events(streamed.body)
        let first = try #require((events.chunks.first?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])
        #expect(first["role"] as? String == "assistant")
        #expect(events.chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" && $0["id"] as? String == events.chunks[0]["id"] as? String })
        let message = (whole.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        #expect(events.text == message?["content"] as? String)
        #expect(events.finishReason == (whole.json["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String)
        #expect(events.done)
    }

    @Test func stopSequenceAndSeed() async throws {
        var options = GenerationOptions()
        options.maxTokens = 12
        options.seed = 7
        options.temperature = 0.9
        let expected = try Demo.session().complete(prompt: "class ", options: options, onText: { _ in })
        let reply = try await TestServer.with(defaults: GenerationOptions()) { server in
            try await server.post("/v1/completions", completion("class ", extra: ["seed": 7, "temperature": 0.9, "top_p": 0.95]))
        }
        #expect((reply.json["choices"] as? [[String: Any]])?.first?["text"] as? String == expected.text)

        // A stop sequence cuts the text before it and ends with "stop".
        let full = try Demo.session().complete(prompt: "def main():\n", options: Demo.greedy, onText: { _ in })
        let cut = try #require(full.text.dropFirst(2).first.map(String.init))
        let stopped = try await TestServer.with { server in
            try await server.post("/v1/completions", completion("def main():\n", extra: ["stop": [cut]]))
        }
        let choice = try #require((stopped.json["choices"] as? [[String: Any]])?.first)
        #expect(choice["finish_reason"] as? String == "stop")
        #expect((choice["text"] as? String).map { full.text.hasPrefix($0) && !$0.contains(cut) } == true)
    }

    /// A request that extends the previous conversation reuses its KV cache, reports it, and
    /// answers what a fresh evaluation of the same conversation answers.
    @Test func kvCacheReusedAcrossRequests() async throws {
        let first = [("user", "def parse(text):")]
        let (one, two, second) = try await TestServer.with { server in
            let one = try await server.post("/v1/chat/completions", chat(first))
            let reply = ((one.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String ?? ""
            let second = first + [("assistant", reply), ("user", "Now write tests.")]
            return (one, try await server.post("/v1/chat/completions", chat(second)), second)
        }
        #expect(one.headers.first(name: "x-reused-tokens") == "0")
        let reused = try #require(two.headers.first(name: "x-reused-tokens").flatMap { Int($0) })
        let usage = try #require(two.json["usage"] as? [String: Any])
        #expect((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == reused)
        let promptTokens = try #require(usage["prompt_tokens"] as? Int)
        #expect(reused > 10 && reused < promptTokens)

        let fresh = try Demo.session()
        let prompt = try fresh.chatPrompt(second.map { ChatMessage(role: $0.0, content: $0.1) })
        let expected = try fresh.generate(tokens: prompt, options: Demo.greedy, onText: { _ in })
        #expect(expected.reusedTokens == 0 && expected.promptTokens == promptTokens)
        #expect(((two.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String == expected.text)
    }

    @Test func modelsAndHealth() async throws {
        let (models, health, one) = try await TestServer.with { server in
            (try await server.get("/v1/models"), try await server.get("/health"), try await server.get("/v1/models/demo"))
        }
        let data = try #require(models.json["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["demo"])
        #expect(models.json["object"] as? String == "list")
        #expect(health.json["status"] as? String == "ok")
        #expect(health.json["context"] as? Int == 1024)
        #expect(one.json["id"] as? String == "demo")
    }
}
