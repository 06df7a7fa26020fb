import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /v1/chat/completions` and `/v1/completions`: check the body, decide which engine
/// takes it (a route rule, a prompt beyond the context or a full queue send it to the
/// fallback when there is one), then answer — whole, or as server-sent events.
struct CompletionHandler: Sendable {
    let engine: Engine
    let fallback: FallbackClient?
    let options: ServerOptions

    enum FallbackReason: String { case route, context, queueFull = "queue_full" }

    func respond(to request: Request, endpoint: Endpoint) async throws -> Response {
        let arrival = ContinuousClock.now
        var request = request
        let bytes: ByteBuffer
        do { bytes = try await request.collectBody(upTo: options.maxBodySize) } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: options.maxBodySize)
        }
        let body = Data(bytes.readableBytesView)
        let parsed = try CompletionRequest(endpoint: endpoint, body: body)
        let prompt = try engine.promptTokens(for: parsed)
        let promptParam = endpoint == .completions ? "prompt" : "messages"
        guard !prompt.isEmpty else { throw APIError.invalidRequest("The prompt is empty.", param: promptParam) }
        let generation = parsed.options(defaults: engine.defaults)

        if let fallback {
            if options.routes.contains(where: { $0.matches(model: parsed.model, localModel: engine.modelName, promptTokens: prompt.count, maxTokens: generation.maxTokens) }) {
                return try await forward(body, to: fallback, endpoint: endpoint, reason: .route)
            }
            if prompt.count >= engine.contextLength { return try await forward(body, to: fallback, endpoint: endpoint, reason: .context) }
        }
        guard prompt.count < engine.contextLength else { throw APIError.contextLengthExceeded(promptTokens: prompt.count, context: engine.contextLength, param: promptParam) }
        guard let ticket = engine.admit() else {
            if let fallback { return try await forward(body, to: fallback, endpoint: endpoint, reason: .queueFull) }
            throw APIError.queueFull(limit: options.maxQueue)
        }
        let events = engine.run(ticket, prompt: prompt, options: generation, channels: endpoint == .chatCompletions, arrival: arrival)
        let builder = ResponseBuilder(endpoint: endpoint, model: engine.modelName)
        if parsed.stream { return stream(events, builder: builder, includeUsage: parsed.includeUsage, request: request) }

        // Wait for the whole answer; the client closing its connection cancels the generation.
        let outcome = try await request.body.consumeWithCancellationOnInboundClose { _ in
            var outcome: CompletionOutcome?
            for try await event in events { if case let .finished(o) = event { outcome = o } }
            guard let outcome else { throw CancellationError() }
            return outcome
        }
        return .json(builder.complete(outcome),
                     headers: [.servedBy: "local", .reusedTokens: String(outcome.reusedTokens)])
    }

    /// Server-sent events: `data: {chunk}\n\n` per piece of text, the finish reason, the usage
    /// if asked for, then `data: [DONE]`. An error after the head went out is sent as
    /// `data: {"error": …}` (OpenAI's clients raise it). The client closing its connection
    /// cancels the generation within one token (or takes the request out of the queue).
    private func stream(_ events: AsyncThrowingStream<EngineEvent, any Error>, builder: ResponseBuilder, includeUsage: Bool,
                        request: Request) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache", .servedBy: "local"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                try await request.body.consumeWithCancellationOnInboundClose { _ in
                    var first = true
                    for try await event in events {
                        switch event {
                        case .started:
                            continue
                        case let .text(text):
                            try await writer.write(Self.event(builder.chunk(text: text, first: first)))
                            first = false
                        case let .reasoning(text):
                            try await writer.write(Self.event(builder.chunk(text: text, first: first, reasoning: true)))
                            first = false
                        case let .finished(outcome):
                            if first { try await writer.write(Self.event(builder.chunk(text: "", first: true))) }
                            try await writer.write(Self.event(builder.chunk(text: "", finishReason: outcome.finishReason)))
                            if includeUsage { try await writer.write(Self.event(builder.usageChunk(outcome))) }
                        }
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            } catch let error as APIError {
                try await writer.write(Self.event(error.body))
            }
            // Any other error (the client went away) propagates: the connection closes.
            try await writer.finish(nil)
        })
    }

    static func event(_ json: Data) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(json)
        buffer.writeString("\n\n")
        return buffer
    }

    /// Hands the request to the fallback and streams its answer back as it comes.
    private func forward(_ body: Data, to fallback: FallbackClient, endpoint: Endpoint, reason: FallbackReason) async throws -> Response {
        engine.metrics.recordFallback(reason: reason.rawValue)
        let answer = try await fallback.forward(endpoint: endpoint, body: body, timeout: options.requestTimeout)
        var headers: HTTPFields = [.servedBy: "fallback", .fallbackReason: reason.rawValue]
        headers[.contentType] = answer.contentType ?? "application/json"
        if answer.contentType?.hasPrefix("text/event-stream") == true { headers[.cacheControl] = "no-cache" }
        return Response(status: .init(code: answer.status), headers: headers, body: ResponseBody { writer in
            // If the upstream breaks off or the client goes away, the error closes the connection.
            for try await chunk in answer.body { try await writer.write(chunk) }
            try await writer.finish(nil)
        })
    }
}
