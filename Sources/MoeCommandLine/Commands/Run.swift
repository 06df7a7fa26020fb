import ArgumentParser
import Foundation
import SwiftMoE

struct Run: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it to stdout.",
        discussion: """
            moe run [MODEL] PROMPT. Without MODEL, uses \(DefaultModel.path). PROMPT "-" reads standard input. \
            With a chat template (the model's, or --chat-template) the prompt is sent as a user message \
            (--no-chat: raw completion). A harmony model (GPT-OSS) prints only its final channel; \
            --show-reasoning adds the analysis. A summary goes to stderr: prompt tokens, prefill and decode speed, peak RSS. \
            Ctrl-C stops generation and still prints the summary. A prompt that starts with "-" goes \
            after "--": moe run --max-tokens 20 -- "-1 is a number".
            """)

    @Argument(help: "[MODEL] PROMPT: a GGUF file or HF directory, then the prompt.")
    var arguments: [String] = []
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var generation: GenerationFlags
    @OptionGroup var templateFlags: TemplateFlags
    @Flag(inversion: .prefixedNo, help: "Apply the chat template (default: when the model has one or --chat-template/--system is given).")
    var chat: Bool?

    func check() throws {
        guard (1...2).contains(arguments.count) else { throw ValidationError("expected [MODEL] PROMPT (one or two arguments), got \(arguments.count)") }
    }

    func run() throws {
        try reportingErrors {
            Terminal.warnAboutInvalidArguments()
            let modelPath = try DefaultModel.resolve(arguments.count == 2 ? arguments[0] : nil)
            guard var prompt = arguments.last else { throw ValidationError("expected [MODEL] PROMPT") }
            if prompt == "-" {
                let input = InputLines().rest()
                if input.repaired { Terminal.note("note: standard input is not valid UTF-8; invalid bytes were replaced with U+FFFD") }
                prompt = input.text
            }
            guard !prompt.isEmpty else { throw ValidationError("the prompt is empty; pass some text (or - to read standard input)") }

            let model = try runtime.resolved.open(modelPath)
            let tokenizer = try Tokenizer(path: modelPath)
            let useChat = chat ?? (tokenizer.chatTemplate != nil || templateFlags.chatTemplate != nil || templateFlags.system != nil)
            // Raw completion never renders a template, so a model template we cannot parse must not stop it.
            let template = useChat ? try templateFlags.template() : ChatTemplate.chatML
            let session = try Session(model: model, tokenizer: tokenizer, systemPrompt: templateFlags.system,
                                      template: template)
            if useChat && session.usesFallbackTemplate && templateFlags.chatTemplate == nil {
                Terminal.note("note: the model has no chat template; using ChatML")
            }
            var options = generation.options
            templateFlags.apply(to: &options)
            let interrupts = InterruptHandler(idleExitStatus: 130)
            let display = ReasoningDisplay(show: templateFlags.showReasoning)
            let result = try interrupts.generating { isCancelled in
                useChat
                    ? try session.respond(to: prompt, options: options, isCancelled: isCancelled,
                                          onReasoning: display.reasoning, onText: display.text)
                    : try session.complete(prompt: prompt, options: options, isCancelled: isCancelled, onText: Terminal.write)
            }
            Terminal.write("\n")
            Terminal.note(Terminal.summary(result))
            if let line = pagingSummary(model) { Terminal.note("[" + line + "]") }
            if result.finishReason == .cancelled { throw ExitCode(130) }
        }
    }
}
