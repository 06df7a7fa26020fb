import ArgumentParser
import Foundation
import SwiftMoE

struct KLD: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        commandName: "kld",
        abstract: "Mean KL divergence of MODEL's token distributions from BASE's on a text, and top-1 agreement (like llama-perplexity --kl-divergence).",
        discussion: "The text is cut into chunks of --ctx-size tokens; the second half of each is scored.")

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "The reference model (e.g. the F16 original of a quantized MODEL).") var base: String
    @Option(help: "A UTF-8 text file.") var text: String
    @OptionGroup var window: ContextWindowOption
    @Option(help: "Score at most this many chunks (default: all). Fewer is faster and less precise.") var chunks: Int?
    @Flag(help: "Print JSON instead of text.") var json = false

    func check() throws {
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let content = try readText(text)
            let ours = try window.open(model.model, with: runtime.resolved)
            // The reference is exact whatever MODEL's --on-miss (a lossy base would measure nothing).
            var baseOptions = runtime.resolved
            baseOptions.onMiss = nil
            let reference = try window.open(base, with: baseOptions)
            let context = try window.resolve(for: ours, reference)
            let tokenizer = try Tokenizer(path: ours.source.path)
            let tokens = tokenizer.encode(content)
            let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
            let r = try ours.klDivergence(from: reference, tokens: tokens, context: context, bos: bos, maxWindows: chunks) { done, total, running in
                FileHandle.standardError.write(Data(String(format: "\r[%d/%d] mean KLD %.6f", done, total, running).utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            if let line = pagingSummary(ours) { Terminal.note(line) }
            if json {
                print(try prettyJSON(r))
            } else {
                print(String(format: "Mean KLD: %.6f ± %.6f  (max %.4f) over %d tokens", r.meanKLD, r.standardError, r.maxKLD, r.scoredTokens))
                print(String(format: "Same top token: %.2f%%", 100 * r.top1Agreement))
                print(String(format: "PPL: %.4f (base %.4f), ratio %+.3f%% ± %.3f%% (paired)", r.perplexity, r.basePerplexity,
                             100 * (exp(r.meanDeltaNLL) - 1), 100 * exp(r.meanDeltaNLL) * r.deltaNLLStandardError))
            }
        }
    }
}
