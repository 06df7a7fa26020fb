import ArgumentParser
import Foundation
import SwiftMoE

/// Chat-template flags of `run` and `chat`.
struct TemplateFlags: ParsableArguments {
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file to use instead of the model's.")
    var chatTemplate: String?
    @Option(help: "System prompt (chat mode).")
    var system: String?
    @Flag(inversion: .prefixedNo, help: "Qwen3-style thinking: sets the template's enable_thinking (default: the template's own default). Thinking can answer hard questions better, at the cost of many more tokens.")
    var think: Bool?
    @Option(name: .customLong("reasoning-effort"), help: "GPT-OSS (harmony) reasoning effort: low, medium or high; sets the template's reasoning_effort (default: the template's, medium). Higher thinks longer before answering: better answers to hard questions, more tokens.")
    var reasoningEffort: ReasoningEffort?
    @Flag(name: .customLong("show-reasoning"), help: "Also print a harmony model's (GPT-OSS) analysis and commentary channels, labelled (dimmed on a terminal); by default only the final answer is printed.")
    var showReasoning = false

    enum ReasoningEffort: String, ExpressibleByArgument, CaseIterable { case low, medium, high }

    func template() throws -> ChatTemplate? {
        guard let chatTemplate else { return nil }
        let source: String
        do { source = try String(contentsOfFile: chatTemplate, encoding: .utf8) } catch {
            throw ValidationError("cannot read the chat template \(chatTemplate): \(error.localizedDescription)")
        }
        return try ChatTemplate(source)
    }

    func apply(to options: inout GenerationOptions) {
        if let think { options.templateVariables["enable_thinking"] = .bool(think) }
        if let reasoningEffort { options.templateVariables["reasoning_effort"] = .string(reasoningEffort.rawValue) }
    }
}
