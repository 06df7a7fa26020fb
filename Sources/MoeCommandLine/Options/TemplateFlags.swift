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
    }
}
