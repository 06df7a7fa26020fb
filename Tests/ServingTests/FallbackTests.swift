import Foundation
import Serving
import Testing

/// Hybrid serving: a server with a tiny context hands what it cannot take to another one on
/// loopback and streams its answer back; metrics say which engine served.
@Suite(.serialized) struct FallbackTests {
    static let longPrompt = String(repeating: "def f(x):\n    return x\n", count: 12)

    @Test func forwardsWhatTheLocalContextCannotHold() async throws {
        try await TestServer.with { upstream in
            let direct = try await upstream.post("/v1/completions", completion(Self.longPrompt))
            var options = ServerOptions()
            options.fallbackURL = upstream.base + "/v1"
            try await TestServer.with(options: options, context: 32) { front in
                let whole = try await front.post("/v1/completions", completion(Self.longPrompt))
                #expect(whole.status == 200)
                #expect(whole.headers.first(name: "x-served-by") == "fallback")
                #expect(whole.headers.first(name: "x-fallback-reason") == "context")
                let text = { (reply: TestServer.Reply) in (reply.json["choices"] as? [[String: Any]])?.first?["text"] as? String }
                #expect(text(whole) != nil && text(whole) == text(direct))

                let streamed = try await front.post("/v1/completions", completion(Self.longPrompt, extra: ["stream": true]))
                #expect(streamed.headers.first(name: "content-type") == "text/event-stream")
                #expect(streamed.headers.first(name: "x-served-by") == "fallback")
                let events = Events(streamed.body)
                #expect(events.done && events.text == text(direct))

                // A short prompt stays local.
                let local = try await front.post("/v1/completions", completion("def "))
                #expect(local.headers.first(name: "x-served-by") == "local")

                let metrics = try await front.get("/metrics").body
                #expect(metrics.contains(#"moe_requests_total{endpoint="/v1/completions",status="200",engine="fallback"} 2"#))
                #expect(metrics.contains(#"moe_requests_total{endpoint="/v1/completions",status="200",engine="local"} 1"#))
                #expect(metrics.contains(#"moe_fallback_requests_total{reason="context"} 2"#))
            }
            // The upstream served them as its own local requests.
            #expect(try await upstream.metric(#"moe_requests_total{endpoint="/v1/completions",status="200",engine="local"}"#) == 3)
        }
    }

    @Test func routeRulesAndFullQueue() async throws {
        try await TestServer.with { upstream in
            var options = ServerOptions()
            options.fallbackURL = upstream.base
            options.fallbackModel = "demo"
            options.routes = [.model("big*"), .minPromptTokens(40)]
            try await TestServer.with(options: options, defaults: QueueTests.endless, maxQueue: 0) { front in
                let routed = try await front.post("/v1/chat/completions", body(["model": "big-model", "messages": [["role": "user", "content": "hi"]], "max_tokens": 4]))
                #expect(routed.headers.first(name: "x-served-by") == "fallback")
                #expect(routed.headers.first(name: "x-fallback-reason") == "route")
                #expect(routed.json["model"] as? String == "demo")  // the upstream got --fallback-model's name
                let long = try await front.post("/v1/completions", completion(Self.longPrompt, maxTokens: 4))
                #expect(long.headers.first(name: "x-fallback-reason") == "route")

                // While the local model is busy and nobody may wait, the fallback takes the next.
                let busy = try await front.request(.POST, "/v1/completions", body: completion("import ", maxTokens: 300, extra: ["stream": true]))
                var chunks = busy.body.makeAsyncIterator()
                _ = try await chunks.next()
                let overflow = try await front.post("/v1/completions", completion("def ", maxTokens: 4))
                #expect(overflow.status == 200)
                #expect(overflow.headers.first(name: "x-fallback-reason") == "queue_full")
            }
        }
    }

    @Test func unreachableFallbackIs502() async throws {
        var options = ServerOptions()
        options.fallbackURL = "http://127.0.0.1:1"  // nothing listens on loopback port 1
        let reply = try await TestServer.with(options: options, context: 16) { front in
            try await front.post("/v1/completions", completion(Self.longPrompt))
        }
        #expect(reply.status == 502)
        #expect(reply.error["type"] as? String == "server_error")
        #expect(reply.error["code"] as? String == "fallback_unreachable")
    }

    @Test func metricsAfterRequests() async throws {
        let text = try await TestServer.with { server in
            _ = try await server.post("/v1/chat/completions", chat([("user", "hi")]))
            _ = try await server.post("/v1/completions", completion("def "))
            _ = try await server.post("/v1/completions", "{")
            return try await server.get("/metrics").body
        }
        for line in [#"moe_requests_total{endpoint="/v1/chat/completions",status="200",engine="local"} 1"#,
                     #"moe_requests_total{endpoint="/v1/completions",status="400",engine="none"} 1"#,
                     "moe_completion_tokens_total 24", "moe_queue_depth 0.0", "moe_requests_running 0.0"] {
            #expect(text.contains(line + "\n"), "\(line)")
        }
        let value = { (name: String) in text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) } }
        #expect((value("moe_prompt_tokens_total") ?? 0) > 2)
        #expect(value("moe_decode_tokens_per_second_count") == 2)
        #expect(value("moe_prefill_tokens_per_second_count") == 2)
        #expect((value("moe_expert_cache_hits_total") ?? 0) + (value("moe_expert_cache_misses_total") ?? 0) > 0)
        #expect((value("moe_expert_bytes_read_total") ?? 0) > 0)
        #expect(value("moe_expert_stall_seconds_total") != nil)
        #expect((value("moe_expert_pool_bytes") ?? 0) > 0)
        #expect((value("moe_peak_resident_bytes") ?? 0) > 1_000_000)
        #expect(text.contains("# TYPE moe_decode_tokens_per_second histogram"))
    }
}
