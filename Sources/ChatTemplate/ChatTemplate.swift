import Foundation

/// One turn of a conversation.
///
/// Templates see it as Hugging Face's message dict: `role`, `content`, and only when set
/// `thinking` (an assistant turn's reasoning; GPT-OSS's template reads this name), `tool_calls`
/// (`[{"id", "type": "function", "function": {"name", "arguments"}}]`), `tool_call_id` and
/// `name` (a tool result). See ``templateValue``.
public struct ChatMessage: Equatable, Sendable, Codable {
    public var role: String
    public var content: String
    /// An assistant turn's reasoning (analysis channel, `<think>` text), kept apart from `content`.
    public var thinking: String?
    public var toolCalls: [ChatToolCall]?
    /// For a `tool` message: the id of the call it answers.
    public var toolCallId: String?
    /// For a `tool` message: the tool's name.
    public var name: String?

    public init(role: String, content: String, thinking: String? = nil, toolCalls: [ChatToolCall]? = nil,
                toolCallId: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.thinking = thinking
        self.toolCalls = toolCalls
        self.toolCallId = toolCallId
        self.name = name
    }
    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: "assistant", content: text) }

    /// The dict a template receives. A tool call's `arguments` JSON text becomes the object it
    /// denotes (Hugging Face passes arguments as a dict, and templates such as GPT-OSS's print
    /// them with `tojson`); text that is not a JSON object stays a string.
    public var templateValue: TemplateValue {
        var o = TemplateValue.TemplateObject([("role", .string(role)), ("content", .string(content))])
        if let thinking { o["thinking"] = .string(thinking) }
        if let toolCalls { o["tool_calls"] = .array(toolCalls.map(\.templateValue)) }
        if let toolCallId { o["tool_call_id"] = .string(toolCallId) }
        if let name { o["name"] = .string(name) }
        return .object(o)
    }
}

/// A function call an assistant turn made (OpenAI's `tool_calls[i]`).
public struct ChatToolCall: Equatable, Sendable, Codable {
    public var id: String?
    public var name: String
    /// The arguments as JSON text, as OpenAI's `function.arguments` carries them.
    public var arguments: String

    public init(id: String? = nil, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }

    public var templateValue: TemplateValue {
        var args = TemplateValue.string(arguments)
        if let parsed = try? TemplateJSON.parse(arguments), case .object = parsed { args = parsed }
        var o = TemplateValue.TemplateObject()
        if let id { o["id"] = .string(id) }
        o["type"] = "function"
        o["function"] = .object(.init([("name", .string(name)), ("arguments", args)]))
        return .object(o)
    }
}

/// A model's Jinja chat template, parsed once and rendered per conversation the way
/// transformers' `apply_chat_template` renders it (jinja2 with `trim_blocks`, `lstrip_blocks`,
/// `loopcontrols`, its `tojson`, `raise_exception` and `strftime_now`).
///
/// ```swift
/// let template = try ChatTemplate(tokenizer.chatTemplate!)
/// let prompt = try template.render(messages: [.user("Hi")], addGenerationPrompt: true,
///                                  bosToken: "<s>", eosToken: "</s>")
/// ```
///
/// Supported: the statements `if/elif/else`, `for` (with `loop.*`, `else`, an `if` filter,
/// tuple unpacking, `break`/`continue`), `set` (names, tuples, `namespace` attributes, blocks),
/// `macro`, `filter` blocks, `raw`, `generation`; comments and whitespace control; the
/// expressions and filters listed in docs/generation.md. Anything else is a
/// ``TemplateError`` naming the line and column, never a crash.
public struct ChatTemplate: Sendable {
    public let source: String
    private let nodes: [Node]

    public init(_ source: String) throws {
        self.source = source
        var parser = try Parser(source: source)
        nodes = try parser.parseTemplate()
    }

    /// Renders `messages`.
    ///
    /// - Parameters:
    ///   - addGenerationPrompt: end with the header that starts the assistant's reply.
    ///   - bosToken, eosToken: the token texts templates refer to as `bos_token`/`eos_token`.
    ///   - tools: tool definitions (`{"type": "function", "function": {"name", "description",
    ///     "parameters"}}`, JSON read with ``TemplateJSON``); `nil` renders `tools` as `none`.
    ///   - variables: extra context, e.g. `["enable_thinking": false]` for Qwen3,
    ///     `["reasoning_effort": "high"]` for GPT-OSS. `documents` is `none` unless given here.
    ///   - now: the date `strftime_now` reports (GPT-OSS, Llama 3.x put it in the system header).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String = "", eosToken: String = "",
                       tools: [TemplateValue]? = nil, variables: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        try render(messageValues: messages.map(\.templateValue), addGenerationPrompt: addGenerationPrompt, bosToken: bosToken,
                   eosToken: eosToken, tools: tools, variables: variables, now: now)
    }

    /// Renders messages given as template values (Hugging Face message dicts, any keys).
    public func render(messageValues: [TemplateValue], addGenerationPrompt: Bool, bosToken: String = "", eosToken: String = "",
                       tools: [TemplateValue]? = nil, variables: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        let globals = Scope(parent: nil)
        for (k, v) in Builtins.globals(now: now) { globals.variables[k] = v }
        let context = Scope(parent: globals)
        context.variables["messages"] = .array(messageValues)
        context.variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        context.variables["bos_token"] = .string(bosToken)
        context.variables["eos_token"] = .string(eosToken)
        context.variables["tools"] = tools.map { .array($0) } ?? TemplateValue.none
        context.variables["documents"] = TemplateValue.none
        for (k, v) in variables { context.variables[k] = v }
        var out = ""
        let interpreter = Interpreter(globals: globals, now: now)
        do {
            try interpreter.render(nodes, scope: context, into: &out)
        } catch is Interpreter.LoopControl {
            throw TemplateError.syntax("`break` or `continue` outside a loop", SourceLocation(line: 1, column: 1))
        }
        return out
    }
}
