import AsyncHTTPClient
import Foundation
import Generation
import NIOCore
@testable import Serving
import Synchronization
import Testing

/// One model, many clients: FIFO turns, a bounded queue, cancellation when a client goes away,
/// timeouts.
@Suite(.serialized) struct QueueTests {
    /// Generation that runs until cancelled or the context (1024) is full: ~5 s in a debug build.
    static var endless: GenerationOptions {
        var o = GenerationOptions.greedy
        o.maxTokens = 100_000
        o.stopAtEndOfSequence = false
        return o
    }

    @Test func turnsAreFIFOAndBounded() async throws {
        let queue = RequestQueue(maxWaiting: 2)
        let first = try #require(queue.admit())
        let second = try #require(queue.admit()), third = try #require(queue.admit())
        #expect(queue.admit() == nil)  // one running, two waiting
        try await first.waitForTurn()
        let order = OrderLog()
        let waiters = [third, second].map { ticket in
            Task {
                try await ticket.waitForTurn()
                order.append(ticket.id)
                ticket.finish()
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(order.ids.isEmpty)
        first.finish()
        for waiter in waiters { try await waiter.value }
        #expect(order.ids == [second.id, third.id])
        #expect(queue.waiting == 0)
        #expect(queue.admit() != nil)
    }

    @Test func cancelledWaiterLeavesTheQueue() async throws {
        let queue = RequestQueue(maxWaiting: 1)
        let running = try #require(queue.admit())
        let waiting = try #require(queue.admit())
        let task = Task { try await waiting.waitForTurn() }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(queue.waiting == 0)
        let next = try #require(queue.admit())
        running.finish()
        try await next.waitForTurn()  // the cancelled one did not take the turn
        next.finish()
    }

    @Test func fullQueueGets429() async throws {
        try await TestServer.with(defaults: Self.endless, maxQueue: 0) { server in
            let long = try await server.request(.POST, "/v1/completions", body: completion("import ", maxTokens: 100_000, extra: ["stream": true]))
            var chunks = long.body.makeAsyncIterator()
            _ = try await chunks.next()  // generating now
            let refused = try await server.post("/v1/completions", completion("import "))
            #expect(refused.status == 429)
            #expect(refused.error["type"] as? String == "rate_limit_error")
            #expect(refused.error["code"] as? String == "queue_full")
            #expect(refused.headers.first(name: "retry-after") == "1")
            #expect(try await server.metric("moe_requests_running") == 1)
        }
    }

    /// A streamed request whose client goes away mid-stream stops generating within a token or
    /// so and frees the model for the next request.
    @Test func disconnectMidStreamFreesTheEngine() async throws {
        try await TestServer.with(defaults: Self.endless, maxQueue: 0) { server in
            let task = Task {
                let response = try await server.request(.POST, "/v1/completions", body: completion("import ", maxTokens: 100_000, extra: ["stream": true]))
                var received = 0
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    if received > 2000 { return }  // the client stops reading: AsyncHTTPClient closes the connection
                }
            }
            try await task.value
            try await waitUntil { try await server.metric("moe_requests_running") == 0 }
            let next = try await server.post("/v1/completions", completion("def "))
            #expect(next.status == 200)
            // The abandoned request generated far fewer than the ~1000 tokens it would have. This
            // count is the check that generation stopped; no wall-clock bound, since a build's
            // speed (debug, a sanitizer: TSan took 4.8 s here) is not what the test is about.
            let generated = try #require(try await server.metric("moe_completion_tokens_total"))
            #expect(generated < 600)
            let statuses = try await server.get("/metrics").body
            #expect(statuses.contains(#"moe_requests_total{endpoint="/v1/completions",status="200",engine="local"} 2"#))
            // The response head said 200 before the client left; the cancellation has its own counter.
            #expect(try await server.metric("moe_requests_cancelled_total") == 1)
        }
    }

    /// The same for a request waiting for its whole answer: the client gives up, generation stops.
    @Test func disconnectDuringWholeAnswer() async throws {
        try await TestServer.with(defaults: Self.endless, maxQueue: 0) { server in
            let waiting = Task { try await server.post("/v1/completions", completion("import ", maxTokens: 100_000)) }
            try await waitUntil { try await server.metric("moe_requests_running") == 1 }
            try await Task.sleep(for: .milliseconds(100))
            waiting.cancel()
            _ = try? await waiting.value
            try await waitUntil { try await server.metric("moe_requests_running") == 0 }
            #expect(try #require(try await server.metric("moe_completion_tokens_total")) < 600)
            #expect(try await server.post("/v1/completions", completion("def ")).status == 200)
            #expect(try await server.get("/metrics").body.contains(#"moe_requests_total{endpoint="/v1/completions",status="499",engine="none"} 1"#))
            #expect(try await server.metric("moe_requests_cancelled_total") == 1)
        }
    }

    /// A waiting request whose client goes away leaves the queue; the running one is unaffected.
    @Test func disconnectWhileQueued() async throws {
        try await TestServer.with(defaults: Self.endless, maxQueue: 1) { server in
            let long = try await server.request(.POST, "/v1/completions", body: completion("import ", maxTokens: 100_000, extra: ["stream": true]))
            var chunks = long.body.makeAsyncIterator()
            _ = try await chunks.next()
            let queued = Task { try await server.post("/v1/completions", completion("def ", maxTokens: 4)) }
            try await waitUntil { try await server.metric("moe_queue_depth") == 1 }
            queued.cancel()
            _ = try? await queued.value
            try await waitUntil { try await server.metric("moe_queue_depth") == 0 }
            #expect(try await server.metric("moe_requests_running") == 1)
            try await waitUntil { try await server.metric("moe_requests_cancelled_total") == 1 }
        }
    }

    @Test func requestTimeout() async throws {
        try await TestServer.with(defaults: Self.endless, requestTimeout: 0.3) { server in
            let whole = try await server.post("/v1/completions", completion("import ", maxTokens: 100_000))
            #expect(whole.status == 504)
            #expect(whole.error["code"] as? String == "request_timeout")
            let streamed = try await server.post("/v1/completions", completion("import ", maxTokens: 100_000, extra: ["stream": true]))
            #expect(streamed.status == 200)
            let events = Events(streamed.body)
            #expect(!events.done)
            #expect((events.chunks.last?["error"] as? [String: Any])?["code"] as? String == "request_timeout")
            #expect(!events.text.isEmpty)
        }
    }
}

/// Polls `condition` every 20 ms for up to 5 s.
func waitUntil(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition not met within 5 s")
}

/// Ticket ids in the order their turns came.
final class OrderLog: Sendable {
    private let log = Mutex<[UInt64]>([])
    func append(_ id: UInt64) { log.withLock { $0.append(id) } }
    var ids: [UInt64] { log.withLock { $0 } }
}
