import Foundation

/// One turn of a conversation.
public struct ChatMessage: Equatable, Sendable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: "assistant", content: text) }
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
    ///   - variables: extra context, e.g. `["enable_thinking": false]` for Qwen3. `tools` and
    ///     `documents` are `none` unless given here, as in transformers.
    ///   - now: the date `strftime_now` reports (GPT-OSS, Llama 3.x put it in the system header).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String = "", eosToken: String = "",
                       variables: [String: TemplateValue] = [:], now: Date = Date()) throws -> String {
        let globals = Scope(parent: nil)
        for (k, v) in Builtins.globals(now: now) { globals.variables[k] = v }
        let context = Scope(parent: globals)
        context.variables["messages"] = .array(messages.map { .object(.init([("role", .string($0.role)), ("content", .string($0.content))])) })
        context.variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        context.variables["bos_token"] = .string(bosToken)
        context.variables["eos_token"] = .string(eosToken)
        context.variables["tools"] = TemplateValue.none
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
