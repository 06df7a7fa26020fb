import ArgumentParser
import Foundation
import SwiftMoE

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a model on a text file (llama-perplexity's method by default).",
        discussion: """
            Default: like llama.cpp's llama-perplexity — the text is tokenized (with BOS if the
            tokenizer adds one), cut into non-overlapping chunks of --context tokens each starting
            with BOS, and only the second half of each chunk is scored. With --stride S:
            transformers' sliding-window method (windows of --context advancing by S, each token
            scored once). Prints the final perplexity ± its standard error.
            """)

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "A UTF-8 text file.") var text: String
    @Option(name: .customLong("ctx-size"), help: "Tokens per chunk/window (n_ctx).") var ctxSize: Int = 512
    @Option(help: "Use the sliding-window method with this stride instead of llama.cpp's chunks.") var stride: Int?
    @Option(help: "Score at most this many chunks/windows (default: all).") var chunks: Int?
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        guard ctxSize >= 4 else { throw ValidationError("--ctx-size must be at least 4") }
        if let stride { guard stride >= 1, stride <= ctxSize else { throw ValidationError("--stride must be between 1 and --ctx-size") } }
        if let chunks { guard chunks >= 1 else { throw ValidationError("--chunks must be at least 1") } }
    }

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: text) else {
                throw ValidationError("cannot read --text \(text)")
            }
            let content = String(decoding: data, as: UTF8.self)
            var options = runtime
            if options.context == nil { options.context = ctxSize }
            let model = try options.open(model.model)
            let tokenizer = try Tokenizer(path: model.source.path)
            let tokens = tokenizer.encode(content)
            let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
            let method: Model.PerplexityMethod = stride.map { .slidingWindow(stride: $0) } ?? .llamaCpp
            let interactive = isatty(STDERR_FILENO) != 0
            let result = try model.perplexity(tokens: tokens, context: ctxSize, method: method, bos: bos, maxWindows: chunks) { done, total, running in
                let line = String(format: "[%d/%d] running perplexity %.4f", done, total, running)
                FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                print("method   \(result.method), n_ctx \(result.context)\(result.stride.map { ", stride \($0)" } ?? "")")
                print("text     \(text): \(tokens.count) tokens, \(result.windows) windows, \(result.scoredTokens) scored")
                print(String(format: "Final estimate: PPL = %.4f +/- %.5f  (mean NLL %.5f nats/token, %.1f s)", result.perplexity, result.standardError, result.meanNLL, result.seconds))
            }
            if let line = pagingSummary(model) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
    }
}
