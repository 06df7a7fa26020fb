import ChatTemplate
import Foundation
import Generation
import Runtime

/// What a running request reports, in order: `started` when it holds the model, text pieces,
/// then `finished`. A stream that ends with an error ends with an ``APIError``.
enum EngineEvent: Sendable {
    case started
    case text(String)
    /// A harmony model's analysis/commentary text (chat requests): `reasoning_content`.
    case reasoning(String)
    case finished(CompletionOutcome)
}

/// The local engine: one model and its ``Session`` (one KV cache, reused when a request extends
/// the previous one's tokens), the queue in front of it, and the generation thread of each
/// request. Forward passes block, so each request generates on a thread of its own while the
/// HTTP side stays on the cooperative pool.
public final class Engine: Sendable {
    public let session: Session
    /// The model's name in requests and `/v1/models`.
    public let modelName: String
    /// Sampling options for what a request leaves unset (the server's --temperature, --top-k, …).
    public let defaults: GenerationOptions
    /// Longest time a request may take from admission (queue wait included); nil = no limit.
    public let requestTimeout: Double?
    let queue: RequestQueue
    let metrics: ServerMetrics

    public init(session: Session, modelName: String, defaults: GenerationOptions, maxQueue: Int, requestTimeout: Double?, metrics: ServerMetrics) {
        self.session = session
        self.modelName = modelName
        self.defaults = defaults
        self.requestTimeout = requestTimeout
        self.metrics = metrics
        queue = RequestQueue(maxWaiting: maxQueue) { [metrics] waiting, running in metrics.setQueue(waiting: waiting, running: running) }
    }

    public var model: Model { session.model }
    /// KV cache positions: a prompt needs at most one less.
    public var contextLength: Int { session.contextLength }

    /// The request's prompt as token ids (the chat template renders messages).
    func promptTokens(for request: CompletionRequest) throws(APIError) -> [Int] {
        switch request.prompt {
        case let .text(text):
            return session.completionPrompt(text)
        case let .messages(messages):
            do { return try session.chatPrompt(messages, options: request.options(defaults: defaults)) } catch {
                // The template's own checks (e.g. roles that must alternate) are about the request.
                throw .invalidRequest("The chat template refused the messages: \(error)", param: "messages")
            }
        }
    }

    /// A place in the queue, or nil when it is full.
    func admit() -> Ticket? { queue.admit() }

    /// Runs an admitted request: waits for its turn, then generates, until `--request-timeout`
    /// after `arrival`. Ending the stream early
    /// (the consumer stops iterating or is cancelled: the client went away) cancels the request
    /// within one token, or takes it out of the queue.
    ///
    /// `channels`: the prompt is a chat turn, so a harmony model's reply is split into
    /// `reasoning` and `text` events (see ``Session/harmony``).
    func run(_ ticket: Ticket, prompt: [Int], options: GenerationOptions, channels: Bool = false,
             arrival: ContinuousClock.Instant = .now) -> AsyncThrowingStream<EngineEvent, any Error> {
        let deadline = requestTimeout.map { arrival + .milliseconds(Int64(($0 * 1000).rounded())) }
        return AsyncThrowingStream { continuation in
            let cancelled = CancellationFlag()
            let waiter = Task {
                do {
                    try await Self.waiting(for: ticket, until: deadline)
                } catch {
                    ticket.finish()
                    if error is CancellationError { self.metrics.recordCancelled() }
                    continuation.finish(throwing: error is CancellationError ? error : APIError.timeout(seconds: self.requestTimeout ?? 0, whileQueued: true))
                    return
                }
                continuation.yield(.started)
                self.generate(ticket, prompt, options, channels: channels, deadline: deadline, cancelled: cancelled, into: continuation)
            }
            continuation.onTermination = { _ in
                cancelled.set()
                waiter.cancel()
            }
        }
    }

    private static func waiting(for ticket: Ticket, until deadline: ContinuousClock.Instant?) async throws {
        guard let deadline else { return try await ticket.waitForTurn() }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { try await ticket.waitForTurn(); return true }
            group.addTask { try await Task.sleep(until: deadline, clock: .continuous); return false }
            let gotTurn = try await group.next() ?? false
            group.cancelAll()
            if !gotTurn { throw TimedOut() }
        }
    }

    private struct TimedOut: Error {}

    /// Generates on a thread of its own (forward passes block); the ticket is finished as soon as
    /// generation returns, before the answer's last event.
    private func generate(_ ticket: Ticket, _ prompt: [Int], _ options: GenerationOptions, channels: Bool, deadline: ContinuousClock.Instant?,
                          cancelled: CancellationFlag,
                          into continuation: AsyncThrowingStream<EngineEvent, any Error>.Continuation) {
        let thread = Thread { [self] in
            let timedOut = { deadline.map { ContinuousClock.now >= $0 } ?? false }
            let generated = Result(catching: {
                try session.generate(tokens: prompt, options: options, channels: channels,
                                     isCancelled: { cancelled.isSet || timedOut() },
                                     onReasoning: { continuation.yield(.reasoning($0.text)) }) { text in
                    continuation.yield(.text(text))
                }
            })
            // The model is free before the answer ends, so a client that sends its next request
            // or reads /metrics as soon as it has the answer finds it idle.
            ticket.finish()
            do {
                let result = try generated.get()
                metrics.recordGeneration(result)
                if result.finishReason == .cancelled, cancelled.isSet { metrics.recordCancelled() }
                if result.finishReason == .cancelled, !cancelled.isSet {
                    continuation.finish(throwing: APIError.timeout(seconds: requestTimeout ?? 0, whileQueued: false))
                    return
                }
                continuation.yield(.finished(Self.outcome(result)))
                continuation.finish()
            } catch let error as GenerationError {
                continuation.finish(throwing: APIError.invalidRequest(error.description))
            } catch {
                continuation.finish(throwing: APIError.internalError("\(error)"))
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    static func outcome(_ r: GenerationResult) -> CompletionOutcome {
        let reason: String
        switch r.finishReason {
        case .maxTokens, .contextFull: reason = "length"
        case .endOfSequence, .stopString, .cancelled: reason = "stop"
        }
        return CompletionOutcome(text: r.text, reasoning: r.reasoning, finishReason: reason, promptTokens: r.promptTokens, completionTokens: r.generatedTokens,
                                 reusedTokens: r.reusedTokens)
    }
}
