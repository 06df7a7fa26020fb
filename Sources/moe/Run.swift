import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import SwiftMoE

/// Where `moe run`/`moe chat` look when no model is given (relative to the working directory).
enum DefaultModel {
    /// The bundled demo model, relative to the package root.
    static let path = "Models/demo/demo.moe"

    /// The given model, or the demo model found from the working directory or from the binary
    /// (`.build/<config>/moe` and `.build/<triple>/<config>/moe` sit two or three levels below the root).
    static func resolve(_ given: String?) throws -> String {
        if let given { return given }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
            + [2, 3].map { levels in (0..<levels).reduce(binary) { url, _ in url.deletingLastPathComponent() } }
        for root in candidates {
            let candidate = root.appendingPathComponent(path).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        throw ValidationError("no model given and the demo model \(path) was not found; pass one: moe run MODEL.gguf \"prompt\"")
    }
}

/// Sampling and stopping flags of `run` and `chat` (docs/generation.md says what each trades).
struct GenerationFlags: ParsableArguments {
    @Option(name: .customLong("max-tokens"), help: "Stop after this many generated tokens.")
    var maxTokens: Int = 256
    @Option(help: "Randomness: 0 = greedy (deterministic, can loop); higher = more varied, less coherent.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample only among the K most likely tokens (0 = off).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens covering this much probability (1 = off).")
    var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this fraction of the most likely one (0 = off).")
    var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Penalize tokens seen in the last --repeat-last-n tokens (1 = off; 1.1 is mild).")
    var repeatPenalty: Float = 1.0
    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the repeat penalty looks at.")
    var repeatLastN: Int = 64
    @Option(help: "Seed for reproducible sampling (default: random, printed in the summary).")
    var seed: UInt64?
    @Option(help: "Stop when this text appears (repeatable); it is not printed.")
    var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.")
    var ignoreEOS = false

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 (off) or more") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else { throw ValidationError("--repeat-penalty must be positive") }
        guard repeatLastN >= 0 else { throw ValidationError("--repeat-last-n must be 0 or more") }
    }

    var options: GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens
        o.temperature = temperature
        o.topK = topK
        o.topP = topP
        o.minP = minP
        o.repetitionPenalty = repeatPenalty
        o.repetitionWindow = repeatLastN
        o.seed = seed
        o.stop = stop
        o.stopAtEndOfSequence = !ignoreEOS
        return o
    }
}

/// Chat-template flags of `run` and `chat`.
struct TemplateFlags: ParsableArguments {
    @Option(name: .customLong("chat-template"), help: "A Jinja chat template file to use instead of the model's.")
    var chatTemplate: String?
    @Option(help: "System prompt (chat mode).")
    var system: String?
    @Flag(inversion: .prefixedNo, help: "Qwen3-style thinking: sets the template's enable_thinking (default: the template's own default).")
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

/// Output written as it comes (no stdio buffering) and the interrupt flag for Ctrl-C.
enum Terminal {
    static func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
    static func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    static func summary(_ r: GenerationResult) -> String {
        let mb = Double(ProcessStats.peakResidentBytes) / 1_048_576
        var parts = [String(format: "prompt %d tokens (%d reused), prefill %.1f t/s", r.promptTokens, r.reusedTokens, r.prefillTokensPerSecond),
                     String(format: "%d generated, decode %.1f t/s", r.generatedTokens, r.decodeTokensPerSecond),
                     "stop: \(r.finishReason.rawValue)", "seed \(r.seed)", String(format: "peak RSS %.1f MB", mb)]
        if r.droppedTurns > 0 { parts.insert("\(r.droppedTurns) old turns dropped", at: 1) }
        return "[" + parts.joined(separator: " | ") + "]"
    }

    /// Warns when a command-line argument was not valid UTF-8 (Swift already replaced the bad bytes with U+FFFD).
    static func warnAboutInvalidArguments() {
        for i in 1..<Int(CommandLine.argc) {
            guard let p = CommandLine.unsafeArgv[i] else { continue }
            if String(validatingCString: p) == nil {
                note("note: argument \(i) is not valid UTF-8; invalid bytes were replaced with U+FFFD")
            }
        }
    }
}

/// Ctrl-C: while generating, stops the reply; otherwise runs `idle` (e.g. exit).
final class InterruptHandler: @unchecked Sendable {
    /// State the signal handler reads and writes: lock-free atomics only (async-signal-safe).
    private static let generating = Atomic<Bool>(false)
    private static let interrupted = Atomic<Bool>(false)
    private static let idleExitStatus = Atomic<Int32>(130)
    private static let idleNewline = Atomic<Bool>(false)

    /// Installs the SIGINT handler synchronously (a DispatchSource arms asynchronously, so a
    /// Ctrl-C right after start-up could be lost). While generating, Ctrl-C sets a flag the
    /// generation loop polls; when idle, the process exits with `idleExitStatus`.
    init(idleExitStatus: Int32, newlineOnIdleExit: Bool = false) {
        InterruptHandler.idleExitStatus.store(idleExitStatus, ordering: .relaxed)
        InterruptHandler.idleNewline.store(newlineOnIdleExit, ordering: .relaxed)
        var action = sigaction()
        #if os(Linux)
        action.__sigaction_handler.sa_handler = { _ in InterruptHandler.handle() }
        #else
        action.__sigaction_u.__sa_handler = { _ in InterruptHandler.handle() }
        #endif
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
    }

    private static func handle() {
        if generating.load(ordering: .acquiring) {
            interrupted.store(true, ordering: .releasing)
        } else {
            if idleNewline.load(ordering: .relaxed) {
                var newline: UInt8 = 0x0A
                _ = write(STDOUT_FILENO, &newline, 1)
            }
            _exit(idleExitStatus.load(ordering: .relaxed))
        }
    }

    /// Runs `body` with Ctrl-C cancelling it; `isCancelled` reports whether it was pressed.
    func generating<T>(_ body: (_ isCancelled: @escaping () -> Bool) throws -> T) rethrows -> T {
        InterruptHandler.interrupted.store(false, ordering: .releasing)
        InterruptHandler.generating.store(true, ordering: .releasing)
        defer { InterruptHandler.generating.store(false, ordering: .releasing) }
        return try body { InterruptHandler.interrupted.load(ordering: .acquiring) }
    }
}

/// Lines from standard input as raw bytes, decoded as UTF-8 with invalid bytes replaced by U+FFFD.
final class InputLines {
    private var buffer: [UInt8] = []
    private var atEnd = false

    /// The next line without its newline, or nil at end of input; `repaired` is true when bytes were replaced.
    func next() -> (text: String, repaired: Bool)? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 0x0D { line.removeLast() }
                return Self.decode(line)
            }
            if atEnd {
                guard !buffer.isEmpty else { return nil }
                defer { buffer = [] }
                return Self.decode(buffer)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(STDIN_FILENO, &chunk, chunk.count)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                atEnd = true
            } else {
                buffer.append(contentsOf: chunk[..<n])
            }
        }
    }

    /// All remaining input.
    func rest() -> (text: String, repaired: Bool) {
        var all: [UInt8] = []
        while let line = nextBytes() { all += line }
        return Self.decode(all)
    }

    private func nextBytes() -> [UInt8]? {
        if atEnd && buffer.isEmpty { return nil }
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(STDIN_FILENO, &chunk, chunk.count)
        if n <= 0 { atEnd = true; return nil }
        return Array(chunk[..<n])
    }

    static func decode(_ bytes: [UInt8]) -> (text: String, repaired: Bool) {
        let text = String(decoding: bytes, as: UTF8.self)
        return (text, Array(text.utf8) != bytes)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming it to stdout.",
        discussion: """
            moe run [MODEL] PROMPT. Without MODEL, uses \(DefaultModel.path)/. PROMPT "-" reads standard input.
            With a chat template (the model's, or --chat-template) the prompt is sent as a user message
            (--no-chat: raw completion). A summary goes to stderr: prompt tokens, prefill and decode speed, peak RSS.
            Ctrl-C stops generation and still prints the summary.
            """)

    @Argument(help: "[MODEL] PROMPT: a GGUF file or HF directory, then the prompt.")
    var arguments: [String] = []
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var generation: GenerationFlags
    @OptionGroup var templateFlags: TemplateFlags
    @Flag(inversion: .prefixedNo, help: "Apply the chat template (default: when the model has one or --chat-template/--system is given).")
    var chat: Bool?

    func validate() throws {
        guard (1...2).contains(arguments.count) else { throw ValidationError("expected [MODEL] PROMPT (one or two arguments), got \(arguments.count)") }
    }

    func run() throws {
        try reportingErrors {
            Terminal.warnAboutInvalidArguments()
            let modelPath = try DefaultModel.resolve(arguments.count == 2 ? arguments[0] : nil)
            var prompt = arguments.last!
            if prompt == "-" {
                let input = InputLines().rest()
                if input.repaired { Terminal.note("note: standard input is not valid UTF-8; invalid bytes were replaced with U+FFFD") }
                prompt = input.text
            }
            guard !prompt.isEmpty else { throw ValidationError("the prompt is empty; pass some text (or - to read standard input)") }

            let model = try runtime.open(modelPath)
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
            let result = try interrupts.generating { isCancelled in
                useChat
                    ? try session.respond(to: prompt, options: options, isCancelled: isCancelled, onText: Terminal.write)
                    : try session.complete(prompt: prompt, options: options, isCancelled: isCancelled, onText: Terminal.write)
            }
            Terminal.write("\n")
            Terminal.note(Terminal.summary(result))
            if let line = pagingSummary(model) { Terminal.note("[" + line + "]") }
            if result.finishReason == .cancelled { throw ExitCode(130) }
        }
    }
}

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive chat that keeps the conversation (and its KV cache) between turns.",
        discussion: """
            Type a message and press Enter. /reset forgets the conversation, /exit (or Ctrl-D) quits.
            Ctrl-C during a reply stops it and returns to the prompt; Ctrl-C at the prompt quits.
            Standard input may be a pipe: each line is one user message. Invalid UTF-8 input is
            repaired (U+FFFD) with a note on stderr. Without MODEL, uses \(DefaultModel.path)/.
            """)

    @Argument(help: "A GGUF file or HF directory (default: \(DefaultModel.path)/).")
    var model: String?
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var generation: GenerationFlags
    @OptionGroup var templateFlags: TemplateFlags
    @Flag(help: "Print a speed summary on stderr after each reply.")
    var stats = false

    func run() throws {
        try reportingErrors {
            let modelPath = try DefaultModel.resolve(model)
            let session = try Session(model: try runtime.open(modelPath), tokenizer: try Tokenizer(path: modelPath),
                                      systemPrompt: templateFlags.system, template: try templateFlags.template())
            if session.usesFallbackTemplate { Terminal.note("note: the model has no chat template; using ChatML") }
            var options = generation.options
            templateFlags.apply(to: &options)
            let interactive = isatty(STDIN_FILENO) != 0
            let interrupts = InterruptHandler(idleExitStatus: 0, newlineOnIdleExit: true)
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
                    let result = try interrupts.generating { isCancelled in
                        try session.respond(to: line, options: options, isCancelled: isCancelled, onText: Terminal.write)
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
