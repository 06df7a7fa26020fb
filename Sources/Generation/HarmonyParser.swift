import Tokenizer

/// The special tokens of OpenAI's harmony format (GPT-OSS), found by name in a vocabulary.
public struct HarmonyTokens: Sendable, Equatable {
    public let start: Int, end: Int, message: Int, channel: Int
    public let returnToken: Int?, call: Int?, constrain: Int?

    /// `nil` unless the vocabulary has `<|start|>`, `<|end|>`, `<|message|>` and `<|channel|>`
    /// as special tokens.
    public init?(tokenizer: Tokenizer) {
        func id(_ name: String) -> Int? {
            guard let i = tokenizer.tokens.firstIndex(of: name), tokenizer.specialTokenIds.contains(i) else { return nil }
            return i
        }
        guard let s = id("<|start|>"), let e = id("<|end|>"), let m = id("<|message|>"), let c = id("<|channel|>") else { return nil }
        start = s; end = e; message = m; channel = c
        returnToken = id("<|return|>"); call = id("<|call|>"); constrain = id("<|constrain|>")
    }

    /// The harmony tokens when chat turns rendered with `template` are harmony conversations:
    /// the vocabulary has the tokens and the template writes `<|channel|>`. Any other model
    /// (or a harmony vocabulary with a template that is not harmony) keeps plain text output.
    public init?(tokenizer: Tokenizer, template: String) {
        guard template.contains("<|channel|>") else { return nil }
        self.init(tokenizer: tokenizer)
    }

    /// The tokens that end an assistant turn: `<|return|>` (done) and `<|call|>` (a tool call
    /// waits for its result). `<|end|>` only ends one message of the turn.
    public var stopTokens: Set<Int> { Set([returnToken, call].compactMap { $0 }) }
}

/// One message of an assistant turn: `<|channel|>analysis<|message|>…<|end|>`.
public struct HarmonyMessage: Sendable, Equatable {
    /// `analysis` (reasoning), `commentary` (tool calls, preambles), `final` (the answer); a
    /// message whose header names no channel counts as `final`.
    public var channel: String
    /// `to=` in the header (`functions.get_weather`): a tool call.
    public var recipient: String?
    /// What follows the channel in the header (`json`, `<|constrain|>json`).
    public var contentType: String?
    public var text: String
    /// False when generation stopped inside the message (no `<|end|>`, `<|return|>`, `<|call|>`).
    public var complete: Bool

    public init(channel: String, recipient: String? = nil, contentType: String? = nil, text: String, complete: Bool) {
        self.channel = channel
        self.recipient = recipient
        self.contentType = contentType
        self.text = text
        self.complete = complete
    }

    public var isFinal: Bool { channel == "final" }
}

/// Splits the tokens a harmony model generates after `<|start|>assistant` into messages by
/// channel, streaming: ``append(_:)`` returns the text that became visible in the current
/// message. Never fails: a sequence cut short leaves the last message incomplete; tokens where
/// a header belongs that never reach `<|message|>` (a model ignoring the format) become a
/// `final` message once they are plainly not a header (see docs/generation.md).
public struct HarmonyParser {
    public let tokens: HarmonyTokens
    let tokenizer: Tokenizer
    /// Header text longer than this without `<|message|>` is taken as content.
    public static let maximumHeaderBytes = 256

    public private(set) var messages: [HarmonyMessage] = []
    /// True after `<|return|>` or `<|call|>`.
    public private(set) var finished = false

    private enum State { case header, content, betweenMessages }
    private var state = State.header
    private var header: [Int] = []
    private var decoder: StreamingDecoder

    public init(tokens: HarmonyTokens, tokenizer: Tokenizer) {
        self.tokens = tokens
        self.tokenizer = tokenizer
        decoder = tokenizer.streamingDecoder(skipSpecialTokens: true)
    }

    /// The message being generated, if the parser is inside one.
    public var current: HarmonyMessage? { state == .content ? messages.last : nil }

    /// Feeds one generated token; returns the message it added text to and that text (empty
    /// when the token only moved the parser along).
    public mutating func append(_ token: Int) -> (message: HarmonyMessage, text: String)? {
        if finished { return nil }
        switch state {
        case .content:
            if token == tokens.end || token == tokens.returnToken || token == tokens.call {
                let tail = decoder.finish()
                messages[messages.count - 1].text += tail
                messages[messages.count - 1].complete = true
                if token != tokens.end { finished = true }
                state = .betweenMessages
                return tail.isEmpty ? nil : (messages[messages.count - 1], tail)
            }
            if token == tokens.start {
                // A new message without <|end|>: the current one stays incomplete.
                let tail = closeTruncated()
                state = .header
                header = []
                return tail.isEmpty ? nil : (messages[messages.count - 1], tail)
            }
            let text = decoder.append(token)
            guard !text.isEmpty else { return nil }
            messages[messages.count - 1].text += text
            return (messages[messages.count - 1], text)
        case .betweenMessages, .header:
            if token == tokens.returnToken || token == tokens.call { finished = true; return nil }
            if token == tokens.start { state = .header; header = []; return nil }
            if token == tokens.end { header = []; return nil }
            state = .header
            if token == tokens.message {
                messages.append(Self.parseHeader(header, tokens: tokens, tokenizer: tokenizer))
                header = []
                state = .content
                return nil
            }
            header.append(token)
            if !header.contains(tokens.channel), tokenizer.decode(header).utf8.count > Self.maximumHeaderBytes {
                // Not a header: the model writes plain text. Show it as the answer.
                let text = tokenizer.decode(header, skipSpecialTokens: true)
                messages.append(HarmonyMessage(channel: "final", text: text, complete: false))
                header = []
                state = .content
                return (messages[messages.count - 1], text)
            }
            return nil
        }
    }

    /// Call when generation ends: flushes an unfinished character of the current message.
    public mutating func finish() -> (message: HarmonyMessage, text: String)? {
        guard state == .content else { return nil }
        let tail = closeTruncated()
        state = .betweenMessages
        return tail.isEmpty ? nil : (messages[messages.count - 1], tail)
    }

    private mutating func closeTruncated() -> String {
        let tail = decoder.finish()
        messages[messages.count - 1].text += tail
        return tail
    }

    /// `assistant<|channel|>commentary to=functions.f <|constrain|>json` → channel, recipient,
    /// content type (as openai-harmony reads a header).
    static func parseHeader(_ ids: [Int], tokens: HarmonyTokens, tokenizer: Tokenizer) -> HarmonyMessage {
        var channel: String?
        var beforeChannel: [Int] = []
        var afterChannel: [Int] = []
        var seenChannel = false
        for id in ids {
            if id == tokens.channel && !seenChannel { seenChannel = true; continue }
            if seenChannel { afterChannel.append(id) } else { beforeChannel.append(id) }
        }
        var recipient: String?
        var contentType: String?
        func words(_ part: [Int]) -> [Substring] {
            tokenizer.decode(part).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        }
        for w in words(beforeChannel) where w.hasPrefix("to=") { recipient = String(w.dropFirst(3)) }
        if seenChannel {
            var rest: [Substring] = []
            for (i, w) in words(afterChannel).enumerated() {
                if i == 0 { channel = String(w); continue }
                if w.hasPrefix("to=") { recipient = String(w.dropFirst(3)) } else { rest.append(w) }
            }
            if !rest.isEmpty { contentType = rest.joined(separator: " ") }
        }
        if channel == nil, recipient == nil {
            let other = words(beforeChannel).filter { $0 != "assistant" }
            if !other.isEmpty { contentType = other.joined(separator: " ") }
        }
        return HarmonyMessage(channel: channel ?? "final", recipient: recipient, contentType: contentType, text: "", complete: false)
    }
}

/// Reasoning text of a harmony model as it streams (see ``Session/harmony``).
public struct ReasoningPiece: Sendable, Equatable {
    /// `analysis` or `commentary`.
    public var channel: String
    /// A tool call's target (`functions.get_weather`).
    public var recipient: String?
    public var text: String
    /// The first piece of a new message (a display may print a label first).
    public var startsMessage: Bool
}
