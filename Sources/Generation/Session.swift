import ChatTemplate
import Executor
import Foundation
import Runtime
import Synchronization
import Tokenizer

/// Why generation could not start.
public enum GenerationError: Error, Equatable, CustomStringConvertible {
    case emptyPrompt
    /// The prompt alone fills the context (after dropping every older chat turn).
    case promptTooLong(tokens: Int, context: Int)

    public var description: String {
        switch self {
        case .emptyPrompt:
            return "the prompt is empty"
        case let .promptTooLong(tokens, context):
            return "the prompt is \(tokens) tokens but the context holds \(context) (one more is needed to reply); shorten the prompt"
        }
    }
}

/// What one call produced and how fast.
public struct GenerationResult: Sendable {
    public enum FinishReason: String, Sendable {
        /// The model produced an end-of-sequence/end-of-turn token.
        case endOfSequence = "eos"
        /// A stop string appeared.
        case stopString = "stop"
        case maxTokens = "max-tokens"
        /// The KV cache reached the context length.
        case contextFull = "context-full"
        /// The caller cancelled (Task cancellation, Ctrl-C).
        case cancelled
    }
    /// The text returned to the caller (stop string and EOS excluded). For a harmony model's
    /// chat turn: the `final` channel only.
    public var text = ""
    /// A harmony model's chat turn: the text of its other channels (analysis, commentary), in
    /// order, messages separated by a blank line; empty for other models.
    public var reasoning = ""
    /// A harmony model's chat turn: every message it generated, by channel (tool calls are
    /// `commentary` messages with a recipient).
    public var messages: [HarmonyMessage] = []
    public var finishReason: FinishReason = .maxTokens
    /// Tokens of the whole rendered prompt, and how many of them were already in the KV cache.
    public var promptTokens = 0
    public var reusedTokens = 0
    public var generatedTokens = 0
    /// Older chat turns dropped so the prompt fits the context.
    public var droppedTurns = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var seed: UInt64 = 0

    /// Prompt tokens evaluated per second (reused tokens are not counted).
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens - reusedTokens) / prefillSeconds : 0 }
    /// Generated tokens per second (each needs one forward pass, except the last).
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(max(0, generatedTokens - 1)) / decodeSeconds : 0 }
}

/// A conversation with a model: keeps the chat history and the KV cache between turns, so
/// each turn evaluates only the tokens that are new since the last one.
///
/// ```swift
/// let session = try Session(modelPath: "qwen3-30b-a3b-q4_k_m.gguf")
/// for try await piece in session.respond(to: "Why is the sky blue?") { print(piece, terminator: "") }
/// ```
///
/// ### Turns and the cache
/// Each turn renders the whole conversation with the model's chat template, tokenizes it
/// (special tokens parsed, no BOS/EOS added: the template writes them, as in transformers),
/// keeps the longest prefix the KV cache already holds and evaluates the rest. If the
/// conversation does not fit the context, the oldest turns after the system prompt are
/// dropped (``GenerationResult/droppedTurns``); a single message that does not fit is an error.
///
/// ### Cancellation
/// Cancelling the task that consumes a stream stops generation before the next token. The
/// partial reply stays in ``history``; the cache keeps every token it evaluated, which is a
/// prefix of what the next turn renders, so the session stays usable.
///
/// ### Concurrency
/// A session is `Sendable`. One call runs at a time; concurrent calls wait for each other (the
/// KV cache and the tokens it holds are guarded by one lock, held for the whole call). Reading
/// ``history`` or ``lastResult`` never waits for a running call: they sit behind a lock of
/// their own. Forward passes take the model's lock (``Model/withExclusiveAccess(_:)``), so
/// other sessions and calls on the same ``Model`` interleave with this one pass by pass.
public final class Session: Sendable {
    public let model: Model
    public let tokenizer: Tokenizer
    /// The template used for chat turns (the model's own, or ``ChatTemplate/chatML`` if it has none).
    public let template: ChatTemplate
    /// True when the model ships no chat template and ``template`` is the ChatML fallback.
    public let usesFallbackTemplate: Bool
    /// KV cache positions available.
    public let contextLength: Int
    /// Set when chat turns are harmony conversations (GPT-OSS): replies are split by channel,
    /// ``GenerationResult/text`` holds the final channel and the rest goes to `onReasoning`.
    public let harmony: HarmonyTokens?
    /// The conversation so far (system prompt, user and assistant turns).
    public var history: [ChatMessage] { record.withLock { $0.history } }
    /// The statistics of the last completed call.
    public var lastResult: GenerationResult? { record.withLock { $0.lastResult } }

    private struct Record {
        var history: [ChatMessage] = []
        var lastResult: GenerationResult?
    }
    /// The KV cache and its tokens; its lock is held for a whole call.
    private let conversation: ConversationLock
    private let record: Mutex<Record>
    private let bosText: String
    private let eosText: String

    /// - Parameters:
    ///   - systemPrompt: the first message of every rendered conversation.
    ///   - template: overrides the tokenizer's chat template.
    ///   - contextLength: KV cache positions (default and maximum: the model's ``Model/maxContext``,
    ///     which a memory budget plans for).
    public init(model: Model, tokenizer: Tokenizer, systemPrompt: String? = nil, template: ChatTemplate? = nil, contextLength: Int? = nil) throws {
        self.model = model
        self.tokenizer = tokenizer
        if let template {
            self.template = template
            usesFallbackTemplate = false
        } else if let source = tokenizer.chatTemplate {
            self.template = try ChatTemplate(source)
            usesFallbackTemplate = false
        } else {
            self.template = ChatTemplate.chatML
            usesFallbackTemplate = true
        }
        harmony = HarmonyTokens(tokenizer: tokenizer, template: self.template.source)
        let cache = try model.makeCache(min(contextLength ?? model.maxContext, model.maxContext))
        self.contextLength = cache.maxPositions
        conversation = ConversationLock(Conversation(cache: cache))
        bosText = tokenizer.bosTokenId.map { tokenizer.tokens[$0] } ?? ""
        eosText = tokenizer.eosTokenId.map { tokenizer.tokens[$0] } ?? ""
        var history: [ChatMessage] = []
        if let systemPrompt, !systemPrompt.isEmpty { history = [.system(systemPrompt)] }
        record = Mutex(Record(history: history))
    }

    /// Opens a model file or directory and its tokenizer.
    public convenience init(modelPath: String, options: ExecutorOptions = ExecutorOptions(), memory: Model.MemoryOptions = Model.MemoryOptions(), systemPrompt: String? = nil) throws {
        let model = try Model(path: modelPath, options: options, memory: memory)
        try self.init(model: model, tokenizer: try Tokenizer(path: modelPath), systemPrompt: systemPrompt)
    }

    /// Frees nothing but forgets what the KV cache holds: the next call evaluates its whole prompt.
    public func discardCache() {
        conversation.withLock { c in
            c.cache.truncate(to: 0)
            c.cachedTokens = []
        }
    }

    /// Forgets the conversation (keeping the system prompt) and the cache.
    public func reset(keepingSystemPrompt: Bool = true) {
        conversation.withLock { c in
            record.withLock { r in r.history = keepingSystemPrompt ? r.history.prefix { $0.role == "system" } : [] }
            c.cache.truncate(to: 0)
            c.cachedTokens = []
        }
    }

    // MARK: - Streams

    /// Adds `message` as a user turn and streams the assistant's reply as text pieces (valid
    /// UTF-8, special tokens left out). The reply joins ``history`` when the stream ends.
    public func respond(to message: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<String, Error> {
        stream { isCancelled, emit in try self.respond(to: message, options: options, isCancelled: isCancelled, onText: emit) }
    }

    /// Raw completion: continues `prompt` (BOS added as the tokenizer says), no chat template,
    /// history untouched.
    public func generate(prompt: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<String, Error> {
        stream { isCancelled, emit in try self.complete(prompt: prompt, options: options, isCancelled: isCancelled, onText: emit) }
    }

    private func stream(
        _ body: @escaping @Sendable (_ isCancelled: () -> Bool, _ emit: (String) -> Void) throws -> GenerationResult
    ) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let cancelled = CancellationFlag()
            continuation.onTermination = { _ in cancelled.set() }
            // A thread of its own: forward passes block, and the cooperative pool must not.
            let thread = Thread {
                do {
                    _ = try body({ cancelled.isSet }, { continuation.yield($0) })
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    // MARK: - Blocking calls (the CLI uses these)

    /// A chat turn; `onText` receives the reply piece by piece; `isCancelled` is polled between tokens.
    @discardableResult
    public func respond(to message: String, options: GenerationOptions = GenerationOptions(),
                        isCancelled: () -> Bool = { false }, onText: (String) -> Void) throws -> GenerationResult {
        try respond(to: message, options: options, isCancelled: isCancelled, onReasoning: { _ in }, onText: onText)
    }

    /// A chat turn that also reports a harmony model's reasoning (analysis and commentary
    /// channels) through `onReasoning`, each new message starting with a ``ReasoningPiece``
    /// that names its channel. The history keeps the final text as `content` and the reasoning
    /// as `thinking`, which the template drops from earlier turns.
    @discardableResult
    public func respond(to message: String, options: GenerationOptions = GenerationOptions(), isCancelled: () -> Bool = { false },
                        onReasoning: (ReasoningPiece) -> Void, onText: (String) -> Void) throws -> GenerationResult {
        try conversation.withLock { c in
            guard !message.isEmpty else { throw GenerationError.emptyPrompt }
            let history = record.withLock { $0.history }
            let system = history.prefix { $0.role == "system" }
            var turns = Array(history.dropFirst(system.count))
            var result = GenerationResult()
            var tokens: [Int]
            while true {
                tokens = try chatPrompt(Array(system) + turns + [.user(message)], options: options)
                if tokens.count < c.cache.maxPositions { break }
                guard !turns.isEmpty else { throw GenerationError.promptTooLong(tokens: tokens.count, context: c.cache.maxPositions) }
                // Drop the oldest exchange (a user turn and what follows up to the next user turn).
                let next = turns.dropFirst().firstIndex { $0.role == "user" } ?? turns.count
                result.droppedTurns += next
                turns.removeFirst(next)
            }
            let conversationSoFar = Array(system) + turns + [.user(message)]
            record.withLock { $0.history = conversationSoFar }
            do {
                try run(tokens, options: options, channels: true, in: &c, isCancelled: isCancelled, onReasoning: onReasoning,
                        onText: onText, result: &result)
            } catch {
                // Keep a partial reply; forget a turn that produced nothing.
                let partial = Self.reply(result)
                record.withLock { if partial.content.isEmpty && partial.thinking == nil { $0.history.removeLast() } else { $0.history.append(partial) } }
                throw error
            }
            let reply = Self.reply(result)
            record.withLock { $0.history.append(reply) }
            return result
        }
    }

    /// The assistant turn a result adds to the history.
    static func reply(_ result: GenerationResult) -> ChatMessage {
        ChatMessage(role: "assistant", content: result.text, thinking: result.reasoning.isEmpty ? nil : result.reasoning)
    }

    /// Raw completion of `prompt` (see ``generate(prompt:options:)``).
    @discardableResult
    public func complete(prompt: String, options: GenerationOptions = GenerationOptions(),
                         isCancelled: () -> Bool = { false }, onText: (String) -> Void) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        return try generate(tokens: completionPrompt(prompt), options: options, isCancelled: isCancelled, onText: onText)
    }

    // MARK: - Prompts as tokens (a server checks and routes a request before it queues it)

    /// The tokens of `messages` rendered with ``template`` and a generation prompt, as a chat
    /// turn renders them (special tokens parsed, no BOS/EOS added: the template writes them).
    public func chatPrompt(_ messages: [ChatMessage], options: GenerationOptions = GenerationOptions()) throws -> [Int] {
        let text = try template.render(messages: messages, addGenerationPrompt: true, bosToken: bosText, eosToken: eosText,
                                       variables: options.templateVariables)
        return tokenizer.encode(text, addSpecialTokens: false, parseSpecial: true)
    }

    /// The tokens of a raw completion prompt (BOS added as the tokenizer says).
    public func completionPrompt(_ text: String) -> [Int] {
        tokenizer.encode(text, addSpecialTokens: true, parseSpecial: true)
    }

    /// Generates a continuation of `prompt` (token ids from ``chatPrompt(_:options:)`` or
    /// ``completionPrompt(_:)``), evaluating only what follows the longest prefix the KV cache
    /// already holds (``GenerationResult/reusedTokens``). ``history`` is untouched: a server that
    /// gets whole conversations in each request reuses the cache when one extends the last.
    ///
    /// - Parameter channels: the prompt is a chat turn (from ``chatPrompt(_:options:)``): a
    ///   harmony model's reply is split by channel as in ``respond(to:options:isCancelled:onReasoning:onText:)``.
    @discardableResult
    public func generate(tokens prompt: [Int], options: GenerationOptions = GenerationOptions(), channels: Bool = false,
                         isCancelled: () -> Bool = { false }, onReasoning: (ReasoningPiece) -> Void = { _ in },
                         onText: (String) -> Void) throws -> GenerationResult {
        try conversation.withLock { c in
            guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
            guard prompt.count < c.cache.maxPositions else { throw GenerationError.promptTooLong(tokens: prompt.count, context: c.cache.maxPositions) }
            var result = GenerationResult()
            try run(prompt, options: options, channels: channels, in: &c, isCancelled: isCancelled, onReasoning: onReasoning,
                    onText: onText, result: &result)
            return result
        }
    }

    /// Evaluates `prompt` after the longest prefix the cache already holds, then samples.
    private func run(_ prompt: [Int], options: GenerationOptions, channels: Bool = false, in c: inout Conversation, isCancelled: () -> Bool,
                     onReasoning: (ReasoningPiece) -> Void = { _ in }, onText: (String) -> Void, result: inout GenerationResult) throws {
        let cache = c.cache
        var sampler = Sampler(options: options)
        result.seed = sampler.seed
        result.promptTokens = prompt.count
        defer {
            // The cache is the truth: it only advances after a whole forward pass.
            c.cachedTokens = Array(c.cachedTokens.prefix(cache.count))
            let last = result
            record.withLock { $0.lastResult = last }
        }

        var common = zip(prompt, c.cachedTokens).prefix { $0 == $1 }.count
        if common == prompt.count { common -= 1 }  // the last prompt token must be evaluated for its logits
        cache.truncate(to: common)
        common = cache.count  // a sliding-window cache that cannot rewind that far starts over
        c.cachedTokens.removeSubrange(common...)
        result.reusedTokens = common

        if isCancelled() { result.finishReason = .cancelled; return }
        let prefillStart = Date()
        let fresh = Array(prompt[common...])
        var logits = try model.forward(tokens: fresh, cache: cache, logits: .last)
        c.cachedTokens += fresh
        result.prefillSeconds = Date().timeIntervalSince(prefillStart)

        var sequence = prompt
        let reply = ReplyText(tokenizer: tokenizer, harmony: channels ? harmony : nil, stop: options.stop)
        let endOfTurn = reply.endOfTurnTokens, notEndOfTurn = reply.notEndOfTurn
        let decodeStart = Date()
        defer { result.decodeSeconds = Date().timeIntervalSince(decodeStart) }
        while true {
            if options.maxTokens <= result.generatedTokens { result.finishReason = .maxTokens; break }
            let token = sampler.sample(logits: logits, previous: sequence)
            if (options.stopAtEndOfSequence && tokenizer.eosTokenIds.contains(token) && token != notEndOfTurn)
                || options.stopTokens.contains(token) || endOfTurn.contains(token) {
                reply.endOfTurn(token, into: &result, onReasoning: onReasoning, onText: onText)
                result.finishReason = .endOfSequence
                break
            }
            result.generatedTokens += 1
            sequence.append(token)
            reply.append(token, into: &result, onReasoning: onReasoning, onText: onText)
            if reply.stopped { result.finishReason = .stopString; break }
            if result.generatedTokens == options.maxTokens { result.finishReason = .maxTokens; break }
            if cache.count >= cache.maxPositions { result.finishReason = .contextFull; break }
            if isCancelled() { result.finishReason = .cancelled; break }
            logits = try model.forward(tokens: [token], cache: cache, logits: .last)
            c.cachedTokens.append(token)
        }
        reply.finish(into: &result, onReasoning: onReasoning, onText: onText)
    }
}

/// What a session's calls read and write: the KV cache and the token ids whose keys and values
/// it holds, in order.
struct Conversation {
    let cache: KVCache
    var cachedTokens: [Int] = []
}

/// A ``Conversation`` and the lock a call holds while it uses it. `@unchecked Sendable`: the
/// conversation is reached only through ``withLock(_:)``, and no call lets the cache escape
/// it. (A `Mutex` cannot hold it: a call hands the cache to forward passes next to the
/// caller's callbacks, and region checking cannot tell that they stay apart.)
final class ConversationLock: @unchecked Sendable {
    private let lock = NSLock()
    private var conversation: Conversation

    init(_ conversation: Conversation) {
        self.conversation = conversation
    }

    func withLock<R>(_ body: (inout Conversation) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&conversation)
    }
}

/// A flag set from one thread (the stream's termination) and read from another (the generating thread).
public final class CancellationFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public func set() { value.store(true, ordering: .releasing) }
    public var isSet: Bool { value.load(ordering: .acquiring) }
}

extension ChatTemplate {
    /// ChatML (`<|im_start|>role\n...<|im_end|>`), used when a model ships no template, as llama.cpp does.
    public static let chatML: ChatTemplate = try! ChatTemplate(
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
}
