import ArgumentParser
import Foundation
import SwiftMoE

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive chat that keeps the conversation (and its KV cache) between turns.",
        discussion: """
            Type a message and press Enter. /reset forgets the conversation, /exit (or Ctrl-D) quits. \
            Ctrl-C during a reply stops it and returns to the prompt; Ctrl-C at the prompt quits. \
            Standard input may be a pipe: each line is one user message. Invalid UTF-8 input is \
            repaired (U+FFFD) with a note on stderr. A harmony model (GPT-OSS) shows only its final \
            channel (--show-reasoning: the analysis too); earlier turns' analysis is dropped from the prompt, as its template does. Without MODEL, uses \(DefaultModel.path).
            """)

    @Argument(help: "A GGUF file or HF directory (default: \(DefaultModel.path)).")
    var model: String?
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var generation: GenerationFlags
    @OptionGroup var templateFlags: TemplateFlags
    @Flag(help: "Print a speed summary on stderr after each reply.")
    var stats = false

    func run() throws {
        try reportingErrors {
            let modelPath = try DefaultModel.resolve(model)
            let session = try Session(model: try runtime.resolved.open(modelPath), tokenizer: try Tokenizer(path: modelPath),
                                      systemPrompt: templateFlags.system, template: try templateFlags.template())
            if session.usesFallbackTemplate { Terminal.note("note: the model has no chat template; using ChatML") }
            var options = generation.options
            templateFlags.apply(to: &options)
            let interactive = isatty(STDIN_FILENO) != 0
            let interrupts = InterruptHandler(idleExitStatus: 0, newlineOnIdleExit: true)
            let display = ReasoningDisplay(show: templateFlags.showReasoning)
            let input = InputLines()
            if interactive { Terminal.note("chatting with \(modelPath) — /reset to start over, /exit or Ctrl-D to quit") }
            while true {
                if interactive { Terminal.write("> ") }
                guard let (line, repaired) = input.next() else {
                    if interactive { Terminal.write("\n") }
                    return
                }
                if repaired { Terminal.note("note: the input was not valid UTF-8; invalid bytes were replaced with U+FFFD") }
                let message = line.trimmingCharacters(in: .whitespaces)
                switch message {
                case "": continue
                case "/exit", "/quit": return
                case "/reset":
                    session.reset()
                    Terminal.note("(conversation reset)")
                    continue
                default: break
                }
                do {
                    display.reset()
                    let result = try interrupts.generating { isCancelled in
                        try session.respond(to: line, options: options, isCancelled: isCancelled,
                                            onReasoning: display.reasoning, onText: display.text)
                    }
                    Terminal.write("\n")
                    if result.finishReason == .cancelled { Terminal.note("(stopped)") }
                    if result.droppedTurns > 0 { Terminal.note("(dropped \(result.droppedTurns) old turns to fit the context)") }
                    if stats { Terminal.note(Terminal.summary(result)) }
                } catch let error as GenerationError {
                    Terminal.note("error: \(error)")  // the conversation goes on
                } catch let error as TemplateError {
                    Terminal.note("error: \(error)")
                }
            }
        }
    }
}
