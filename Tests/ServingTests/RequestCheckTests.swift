import Foundation
import Serving
import Testing

/// Untrusted bodies, headers and parameters: every refusal is a 4xx with an OpenAI-style body
/// naming the parameter, never a crash.
@Suite(.serialized) struct RequestCheckTests {
    static var user: [String: Any] { ["role": "user", "content": "hi"] }

    /// (endpoint, body, expected param or nil)
    static let refused: [(String, String, String?)] = [
        ("/v1/chat/completions", "{not json", nil),
        ("/v1/chat/completions", "[1, 2]", nil),
        ("/v1/chat/completions", String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000), nil),
        ("/v1/chat/completions", body(["model": "demo"]), "messages"),
        ("/v1/chat/completions", body(["messages": []]), "messages"),
        ("/v1/chat/completions", body(["messages": [["role": "tool", "content": "x"]]]), "messages[0].role"),
        ("/v1/chat/completions", body(["messages": [["role": "user"]]]), "messages[0].content"),
        ("/v1/chat/completions", body(["messages": [["role": "user", "content": "x", "name": "bob"]]]), "messages[0].name"),
        ("/v1/chat/completions", body(["messages": [["role": "user", "content": [["type": "image_url", "image_url": "x"]]]]]), "messages[0].content[0]"),
        ("/v1/chat/completions", body(["messages": [user], "n": 2]), "n"),
        ("/v1/chat/completions", body(["messages": [user], "temperature": 3]), "temperature"),
        ("/v1/chat/completions", body(["messages": [user], "temperature": "hot"]), "temperature"),
        ("/v1/chat/completions", body(["messages": [user], "top_p": 0]), "top_p"),
        ("/v1/chat/completions", body(["messages": [user], "max_tokens": 0]), "max_tokens"),
        ("/v1/chat/completions", body(["messages": [user], "max_tokens": 2.5]), "max_tokens"),
        ("/v1/chat/completions", body(["messages": [user], "max_tokens": true]), "max_tokens"),
        ("/v1/chat/completions", body(["messages": [user], "max_tokens": 4, "max_completion_tokens": 5]), "max_tokens"),
        ("/v1/chat/completions", body(["messages": [user], "stop": ["a", "b", "c", "d", "e"]]), "stop"),
        ("/v1/chat/completions", body(["messages": [user], "stop": [""]]), "stop"),
        ("/v1/chat/completions", body(["messages": [user], "seed": "x"]), "seed"),
        ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "hi"}], "seed": 9223372036854775808}"#, "seed"),
        ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e300}"#, "max_tokens"),
        ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "hi"}], "temperature": -0.0001}"#, "temperature"),
        ("/v1/chat/completions", body(["messages": [user], "tools": []]), "tools"),
        ("/v1/chat/completions", body(["messages": [user], "response_format": ["type": "json_object"]]), "response_format"),
        ("/v1/chat/completions", body(["messages": [user], "presence_penalty": 0.5]), "presence_penalty"),
        ("/v1/chat/completions", body(["messages": [user], "logprobs": true]), "logprobs"),
        ("/v1/chat/completions", body(["messages": [user], "stream_options": ["include_usage": true]]), "stream_options"),
        ("/v1/chat/completions", body(["messages": [user], "stream": true, "stream_options": ["extra": 1]]), "stream_options.extra"),
        ("/v1/completions", body(["model": "demo"]), "prompt"),
        ("/v1/completions", body(["prompt": ""]), "prompt"),
        ("/v1/completions", body(["prompt": [1, 2, 3]]), "prompt"),
        ("/v1/completions", body(["prompt": ["a", "b"]]), "prompt"),
        ("/v1/completions", body(["prompt": "x", "echo": true]), "echo"),
        ("/v1/completions", body(["prompt": "x", "best_of": 3]), "best_of"),
        ("/v1/completions", body(["prompt": "x", "messages": [user]]), "messages"),
    ]

    @Test func unsupportedOrMalformedRequestsGet400() async throws {
        let replies = try await TestServer.with { server in
            var replies: [TestServer.Reply] = []
            for (path, text, _) in Self.refused { replies.append(try await server.post(path, text)) }
            // Still serving after all that.
            replies.append(try await server.post("/v1/chat/completions", chat([("user", "hi")], maxTokens: 2)))
            return replies
        }
        for ((path, text, param), reply) in zip(Self.refused, replies) {
            #expect(reply.status == 400, "\(path) \(text.prefix(80))")
            #expect(reply.error["type"] as? String == "invalid_request_error", "\(text.prefix(80))")
            #expect((reply.error["message"] as? String)?.isEmpty == false)
            #expect(reply.error["param"] as? String == param, "\(text.prefix(80))")
            #expect(reply.error.keys.sorted() == ["code", "message", "param", "type"])
        }
        #expect(replies.last?.status == 200)
    }

    @Test func nullParametersMeanDefaults() throws {
        let request = try CompletionRequest(endpoint: .chatCompletions, body: Data(body([
            "messages": [["role": "developer", "content": [["type": "text", "text": "Be "], ["type": "text", "text": "brief."]]], Self.user],
            "max_tokens": NSNull(), "temperature": NSNull(), "stop": "END", "n": 1, "seed": -1, "user": "u1", "stream": false,
        ]).utf8))
        #expect(request.prompt == .messages([.system("Be brief."), .user("hi")]))
        #expect(request.maxTokens == nil && request.temperature == nil)
        #expect(request.stop == ["END"])
        #expect(request.seed == UInt64.max)
        let options = request.options(defaults: Demo.greedy)
        #expect(options.maxTokens == Demo.greedy.maxTokens && options.stop == ["END"])
    }

    @Test func unknownPathsBodySizeAndContext() async throws {
        var options = ServerOptions()
        options.maxBodySize = 2048
        let (notFound, tooLarge, tooLong, justFits) = try await TestServer.with(options: options, context: 32) { server in
            (try await server.get("/v2/anything"),
             try await server.post("/v1/completions", completion(String(repeating: "x", count: 4096))),
             try await server.post("/v1/completions", completion(String(repeating: "def f(x): return x\n", count: 20))),
             try await server.post("/v1/completions", completion("def f(x):", maxTokens: 64)))
        }
        #expect(notFound.status == 404 && notFound.error["code"] as? String == "unknown_url")
        #expect(tooLarge.status == 413 && tooLarge.error["type"] as? String == "invalid_request_error")
        #expect(tooLong.status == 400 && tooLong.error["code"] as? String == "context_length_exceeded")
        #expect(tooLong.error["param"] as? String == "prompt")
        // A prompt that fits generates until the context is full: finish_reason "length", and the
        // last token, sampled from the logits of the full context, is never stored (context + 1).
        #expect(justFits.status == 200)
        let choice = (justFits.json["choices"] as? [[String: Any]])?.first
        #expect(choice?["finish_reason"] as? String == "length")
        let usage = justFits.json["usage"] as? [String: Any]
        #expect(usage?["total_tokens"] as? Int == 33)
    }

    @Test func apiKey() async throws {
        var options = ServerOptions()
        options.apiKey = "s3cret"
        let request = chat([("user", "hi")], maxTokens: 2)
        let replies = try await TestServer.with(options: options) { server in
            [try await server.post("/v1/chat/completions", request),
             try await server.post("/v1/chat/completions", request, headers: [("Authorization", "Bearer s3cre")]),
             try await server.post("/v1/chat/completions", request, headers: [("Authorization", "Bearer s3cret2")]),
             try await server.get("/metrics"),
             try await server.get("/health"),
             try await server.post("/v1/chat/completions", request, headers: [("Authorization", "Bearer s3cret")]),
             try await server.get("/v1/models", headers: [("Authorization", "Bearer s3cret")])]
        }
        #expect(replies.map(\.status) == [401, 401, 401, 401, 200, 200, 200])
        #expect(replies[0].error["code"] as? String == "invalid_api_key")
    }

    @Test func optionsAndRouteRules() throws {
        #expect(try RouteRule(parsing: "model=gpt-4*") == .model("gpt-4*"))
        #expect(try RouteRule(parsing: "min-prompt-tokens=100") == .minPromptTokens(100))
        for bad in ["model", "model=", "min-prompt-tokens=0", "min-max-tokens=x", "size=3"] {
            #expect(throws: ServerOptionsError.self) { try RouteRule(parsing: bad) }
        }
        #expect(RouteRule.model("gpt-4*").matches(model: "gpt-4o", localModel: "demo", promptTokens: 1, maxTokens: 1))
        #expect(!RouteRule.model("*").matches(model: "demo", localModel: "demo", promptTokens: 1, maxTokens: 1))
        #expect(RouteRule.model("*").matches(model: "big", localModel: "demo", promptTokens: 1, maxTokens: 1))
        #expect(RouteRule.minMaxTokens(100).matches(model: nil, localModel: "demo", promptTokens: 1, maxTokens: 100))
        #expect(!RouteRule.minPromptTokens(100).matches(model: nil, localModel: "demo", promptTokens: 99, maxTokens: 1))

        var options = ServerOptions()
        options.routes = [.minPromptTokens(5)]
        #expect(throws: ServerOptionsError.self) { try options.validate() }  // a route needs a fallback
        options.fallbackURL = "ftp://x"
        #expect(throws: ServerOptionsError.self) { try options.validate() }
        options.fallbackURL = "http://127.0.0.1:9/v1/"
        try options.validate()
        #expect(try FallbackClient(url: "http://127.0.0.1:9/v1/").baseURL == "http://127.0.0.1:9")
        options.maxQueue = -1
        #expect(throws: ServerOptionsError.self) { try options.validate() }
    }
}
