import ChatTemplate
import Foundation
import Generation

/// The two generating endpoints.
public enum Endpoint: String, Sendable, CaseIterable {
    case chatCompletions = "/v1/chat/completions"
    case completions = "/v1/completions"
}

/// A checked `POST /v1/chat/completions` or `/v1/completions` body: the subset of OpenAI's
/// parameters this server honours (docs/serving.md). Anything else — an unknown parameter, a
/// wrong type, a value out of range, a feature such as `n > 1` or tools — is an ``APIError``
/// (400) naming the parameter.
public struct CompletionRequest: Sendable, Equatable {
    public enum Prompt: Sendable, Equatable {
        /// Chat: rendered with the model's chat template.
        case messages([ChatMessage])
        /// Completion: the raw text to continue.
        case text(String)
    }

    public let endpoint: Endpoint
    public var prompt: Prompt
    public var model: String?
    public var stream = false
    /// `stream_options.include_usage`: a last chunk with `usage` before `[DONE]`.
    public var includeUsage = false
    public var maxTokens: Int?
    public var temperature: Float?
    public var topP: Float?
    public var stop: [String] = []
    public var seed: UInt64?
    /// OpenAI's `reasoning_effort` (chat): the template variable GPT-OSS's template reads.
    public var reasoningEffort: String?

    /// OpenAI's limit on stop sequences.
    public static let maxStopSequences = 4
    public static let maxStopLength = 256

    static let common = ["model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "stop", "seed", "n",
                         "presence_penalty", "frequency_penalty", "logprobs", "user"]
    static let chatOnly = ["messages", "max_completion_tokens", "reasoning_effort"]
    static let reasoningEfforts = ["low", "medium", "high"]
    static let completionOnly = ["prompt", "echo", "best_of", "suffix"]
    static let roles: [String: String] = ["system": "system", "developer": "system", "user": "user", "assistant": "assistant"]

    /// Parses and checks a body (untrusted bytes).
    public init(endpoint: Endpoint, body: Data) throws(APIError) {
        self.endpoint = endpoint
        var p = Parameters(try JSONValue.object(from: body))
        model = try p.string("model")
        switch endpoint {
        case .chatCompletions:
            guard let messages = p.take("messages") else { throw .invalidRequest("'messages' is required.", param: "messages") }
            prompt = .messages(try Self.messages(messages))
        case .completions:
            prompt = .text(try Self.promptText(p.take("prompt")))
            try p.onlyDefault("echo", .bool(false), "the reply never repeats the prompt")
            try p.onlyDefault("best_of", .integer(1), "one candidate is generated")
            try p.onlyDefault("suffix", .null, "no insertion after a suffix")
        }
        stream = try p.bool("stream") ?? false
        if let options = p.take("stream_options") {
            guard stream else { throw .invalidRequest("'stream_options' is only allowed when 'stream' is true.", param: "stream_options") }
            guard case let .object(object) = options else { throw p.wrongType("stream_options", options, expected: "an object") }
            var o = Parameters(object, prefix: "stream_options.")
            includeUsage = try o.bool("include_usage") ?? false
            try o.finish(supported: ["include_usage"])
        }
        let maxTokens = try p.integer("max_tokens", in: 1...Int64(Int32.max))
        let maxCompletionTokens = endpoint == .chatCompletions ? try p.integer("max_completion_tokens", in: 1...Int64(Int32.max)) : nil
        if let maxTokens, let maxCompletionTokens, maxTokens != maxCompletionTokens {
            throw .invalidRequest("'max_tokens' and 'max_completion_tokens' disagree; give one.", param: "max_tokens")
        }
        self.maxTokens = (maxCompletionTokens ?? maxTokens).map { Int($0) }
        temperature = try p.number("temperature", in: 0...2).map { Float($0) }
        topP = try p.number("top_p", in: 0...1, openLower: true).map { Float($0) }
        stop = try Self.stopSequences(p.take("stop"))
        seed = try p.integer("seed", in: Int64.min...Int64.max).map { UInt64(bitPattern: $0) }
        if endpoint == .chatCompletions, let effort = try p.string("reasoning_effort") {
            guard Self.reasoningEfforts.contains(effort) else {
                throw .invalidRequest("'reasoning_effort' must be one of \(Self.reasoningEfforts.joined(separator: ", ")).", param: "reasoning_effort")
            }
            reasoningEffort = effort
        }
        try p.onlyDefault("n", .integer(1), "one choice per request")
        try p.onlyDefault("presence_penalty", .integer(0), "use the server's --repeat-penalty")
        try p.onlyDefault("frequency_penalty", .integer(0), "use the server's --repeat-penalty")
        try p.onlyDefault("logprobs", endpoint == .chatCompletions ? .bool(false) : .null, "log probabilities are not returned")
        _ = try p.string("user")  // an end-user id for abuse monitoring: accepted, not used
        try p.finish(supported: Self.common + (endpoint == .chatCompletions ? Self.chatOnly : Self.completionOnly))
    }

    /// The sampling options: the request's values over the server's defaults.
    public func options(defaults: GenerationOptions) -> GenerationOptions {
        var o = defaults
        if let maxTokens { o.maxTokens = maxTokens }
        if let temperature { o.temperature = temperature }
        if let topP { o.topP = topP }
        if !stop.isEmpty { o.stop = stop }
        if let seed { o.seed = seed }
        if let reasoningEffort { o.templateVariables["reasoning_effort"] = .string(reasoningEffort) }
        return o
    }

    private static func messages(_ value: JSONValue) throws(APIError) -> [ChatMessage] {
        guard case let .array(items) = value, !items.isEmpty else {
            throw .invalidRequest("'messages' must be a non-empty array of {role, content} objects.", param: "messages")
        }
        var messages: [ChatMessage] = []
        for (index, item) in items.enumerated() {
            let prefix = "messages[\(index)]."
            guard case let .object(object) = item else {
                throw .invalidRequest("'messages[\(index)]' must be an object with 'role' and 'content'.", param: "messages[\(index)]")
            }
            var m = Parameters(object, prefix: prefix)
            guard let roleName = try m.string("role") else { throw .invalidRequest("'\(prefix)role' is required.", param: prefix + "role") }
            guard let role = roles[roleName] else {
                throw .invalidRequest("'\(prefix)role' \"\(roleName)\" is not supported (system, developer, user, assistant; no tools).", param: prefix + "role")
            }
            guard let content = m.take("content") else { throw .invalidRequest("'\(prefix)content' is required.", param: prefix + "content") }
            let text = try Self.text(of: content, param: prefix + "content")
            // An earlier assistant turn's reasoning, as this server returns it; the template
            // decides whether it is rendered (GPT-OSS's drops it from earlier turns).
            let reasoning = role == "assistant" ? try m.string("reasoning_content") : nil
            try m.finish(supported: role == "assistant" ? ["role", "content", "reasoning_content"] : ["role", "content"])
            messages.append(ChatMessage(role: role, content: text, thinking: reasoning))
        }
        return messages
    }

    /// A message's content: a string, or an array of `{"type": "text", "text": …}` parts (joined).
    private static func text(of content: JSONValue, param: String) throws(APIError) -> String {
        switch content {
        case let .string(s):
            return s
        case let .array(parts):
            var text = ""
            for (index, part) in parts.enumerated() {
                guard case let .object(object) = part, object["type"] == .string("text"), case let .string(piece)? = object["text"], object.count == 2 else {
                    throw .invalidRequest("'\(param)[\(index)]' must be {\"type\": \"text\", \"text\": …}: only text content is supported.", param: "\(param)[\(index)]")
                }
                text += piece
            }
            return text
        default:
            throw .invalidRequest("'\(param)' must be a string or an array of text parts, not \(content.typeName).", param: param)
        }
    }

    private static func promptText(_ value: JSONValue?) throws(APIError) -> String {
        guard let value else { throw .invalidRequest("'prompt' is required.", param: "prompt") }
        let text: String
        switch value {
        case let .string(s): text = s
        case let .array(items) where items.count == 1 && items[0].stringValue != nil: text = items[0].stringValue ?? ""
        default: throw .invalidRequest("'prompt' must be a string (or an array of one string); token arrays and batches are not supported.", param: "prompt")
        }
        guard !text.isEmpty else { throw .invalidRequest("'prompt' is empty.", param: "prompt") }
        return text
    }

    private static func stopSequences(_ value: JSONValue?) throws(APIError) -> [String] {
        let items: [JSONValue]
        switch value {
        case nil: return []
        case let .string(s)?: items = [.string(s)]
        case let .array(a)?: items = a
        default: throw .invalidRequest("'stop' must be a string or an array of strings.", param: "stop")
        }
        guard items.count <= maxStopSequences else { throw .invalidRequest("'stop' holds at most \(maxStopSequences) sequences.", param: "stop") }
        var stops: [String] = []
        for item in items {
            guard case let .string(s) = item, !s.isEmpty, s.count <= maxStopLength else {
                throw .invalidRequest("'stop' sequences must be non-empty strings of at most \(maxStopLength) characters.", param: "stop")
            }
            stops.append(s)
        }
        return stops
    }
}
