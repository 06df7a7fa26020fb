import Foundation

/// What a generation produced, as a response reports it.
public struct CompletionOutcome: Sendable, Equatable {
    public var text: String
    /// A harmony model's analysis/commentary channels (chat): `message.reasoning_content`,
    /// present only when non-empty, as llama.cpp's server and vLLM report reasoning.
    public var reasoning: String = ""
    /// OpenAI's `finish_reason`: `stop` (end of turn or a stop sequence) or `length` (max_tokens or the context).
    public var finishReason: String
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens whose keys and values were already in the KV cache (`usage.prompt_tokens_details.cached_tokens`).
    public var reusedTokens: Int
}

/// Builds the JSON bodies of one response: the whole object, or the chunks of a stream
/// (`chat.completion` / `chat.completion.chunk`, `text_completion`), shaped as OpenAI's.
struct ResponseBuilder: Sendable {
    let endpoint: Endpoint
    let model: String
    /// Unix time of the response, the same in every chunk.
    let created = Int(Date().timeIntervalSince1970)
    private let serial = String((0..<24).map { _ in "0123456789abcdef".randomElement() ?? "0" })

    /// `chatcmpl-…` or `cmpl-…`, the same in every chunk of a stream.
    var id: String { (isChat ? "chatcmpl-" : "cmpl-") + serial }
    private var isChat: Bool { endpoint == .chatCompletions }

    static func usage(_ o: CompletionOutcome) -> JSONValue {
        .object(["prompt_tokens": .int(o.promptTokens), "completion_tokens": .int(o.completionTokens),
                 "total_tokens": .int(o.promptTokens + o.completionTokens),
                 "prompt_tokens_details": .object(["cached_tokens": .int(o.reusedTokens)])])
    }

    private func envelope(object: String, choices: [JSONValue], usage: JSONValue = .null) -> Data {
        OpenAIJSON.encode(JSONValue.object(["id": .string(id), "object": .string(object), "created": .int(created), "model": .string(model),
                                            "system_fingerprint": .null, "choices": .array(choices), "usage": usage]))
    }

    /// The non-streamed response.
    func complete(_ o: CompletionOutcome) -> Data {
        var message: [String: JSONValue] = ["role": "assistant", "content": .string(o.text)]
        if !o.reasoning.isEmpty { message["reasoning_content"] = .string(o.reasoning) }
        let choice: JSONValue = isChat
            ? .object(["index": 0, "message": .object(message), "logprobs": .null, "finish_reason": .string(o.finishReason)])
            : .object(["index": 0, "text": .string(o.text), "logprobs": .null, "finish_reason": .string(o.finishReason)])
        return envelope(object: isChat ? "chat.completion" : "text_completion", choices: [choice], usage: Self.usage(o))
    }

    /// One streamed chunk: the first chat chunk carries the role, the last one the finish reason.
    /// `reasoning`: the piece is reasoning (`delta.reasoning_content` instead of `delta.content`).
    func chunk(text: String, first: Bool = false, finishReason: String? = nil, reasoning: Bool = false) -> Data {
        let reason: JSONValue = finishReason.map { .string($0) } ?? .null
        if isChat {
            var delta: [String: JSONValue] = finishReason == nil ? [reasoning ? "reasoning_content" : "content": .string(text)] : [:]
            if first { delta["role"] = "assistant" }
            return envelope(object: "chat.completion.chunk",
                            choices: [.object(["index": 0, "delta": .object(delta), "logprobs": .null, "finish_reason": reason])])
        }
        return envelope(object: "text_completion", choices: [.object(["index": 0, "text": .string(text), "logprobs": .null, "finish_reason": reason])])
    }

    /// The last chunk when the request asked for `stream_options.include_usage`: no choices, the usage.
    func usageChunk(_ o: CompletionOutcome) -> Data {
        envelope(object: isChat ? "chat.completion.chunk" : "text_completion", choices: [], usage: Self.usage(o))
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int64) { self = .integer(value) }
}
