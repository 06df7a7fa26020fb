import ArgumentParser
import Foundation
import SwiftMoE

struct Perplexity: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a model on a text file (llama-perplexity's method by default).",
        discussion: """
            Default: like llama.cpp's llama-perplexity — the text is tokenized (with BOS if the \
            tokenizer adds one), cut into non-overlapping chunks of --ctx-size tokens each starting \
            with BOS, and only the second half of each chunk is scored. With --stride S: \
            transformers' sliding-window method (windows of --ctx-size advancing by S, each token \
            scored once). Prints the final perplexity ± its standard error.
            """)

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "A UTF-8 text file.") var text: String
    @OptionGroup var window: ContextWindowOption
    @Option(help: "Use the sliding-window method with this stride (at most --ctx-size) instead of llama.cpp's chunks. Smaller strides give each scored token more context and cost proportionally more time.")
    var stride: Int?
    @Option(help: "Score at most this many chunks/windows (default: all). Fewer is faster and less precise.") var chunks: Int?
    @Flag(help: "Print JSON instead of text.") var json = false

    func check() throws {
        if let stride {
            guard stride >= 1, stride <= window.ctxSize ?? .max else { throw ValidationError("--stride must be between 1 and --ctx-size") }
        }
        if let chunks { guard chunks >= 1 else { throw ValidationError("--chunks must be at least 1") } }
    }

    func run() throws {
        try reportingErrors {
            let content = try readText(text)
            let model = try window.open(model.model, with: runtime.resolved)
            let context = try window.resolve(for: model)
            if let stride, stride > context { throw ValidationError("--stride \(stride) is longer than the \(context)-token windows (--ctx-size)") }
            let tokenizer = try Tokenizer(path: model.source.path)
            let tokens = tokenizer.encode(content)
            let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
            let method: Model.PerplexityMethod = stride.map { .slidingWindow(stride: $0) } ?? .llamaCpp
            let interactive = isatty(STDERR_FILENO) != 0
            let result = try model.perplexity(tokens: tokens, context: context, method: method, bos: bos, maxWindows: chunks) { done, total, running in
                let line = String(format: "[%d/%d] running perplexity %.4f", done, total, running)
                FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if json {
                print(try prettyJSON(result))
            } else {
                print("method   \(result.method), n_ctx \(result.context)\(result.stride.map { ", stride \($0)" } ?? "")")
                print("text     \(text): \(tokens.count) tokens, \(result.windows) windows, \(result.scoredTokens) scored")
                print(String(format: "Final estimate: PPL = %.4f +/- %.5f  (mean NLL %.5f nats/token, %.1f s)", result.perplexity, result.standardError, result.meanNLL, result.seconds))
            }
            if let line = pagingSummary(model) { Terminal.note(line) }
        }
    }
}
