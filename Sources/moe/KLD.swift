import ArgumentParser
import Foundation
import SwiftMoE

struct KLD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kld",
        abstract: "Mean KL divergence of MODEL's token distributions from BASE's on a text, and top-1 agreement (like llama-perplexity --kl-divergence).")

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "The reference model (e.g. the F16 original of a quantized MODEL).") var base: String
    @Option(help: "A UTF-8 text file.") var text: String
    @Option(name: .customLong("ctx-size"), help: "Tokens per chunk; the second half of each is scored.") var ctxSize: Int = 512
    @Option(help: "Score at most this many chunks.") var chunks: Int?
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: text) else { throw ValidationError("cannot read --text \(text)") }
            var options = runtime
            if options.context == nil { options.context = ctxSize }
            let ours = try options.open(model.model)
            let reference = try options.open(base)
            let tokenizer = try Tokenizer(path: ours.source.path)
            let tokens = tokenizer.encode(String(decoding: data, as: UTF8.self))
            let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
            let r = try ours.klDivergence(from: reference, tokens: tokens, context: ctxSize, bos: bos, maxWindows: chunks) { done, total, running in
                FileHandle.standardError.write(Data(String(format: "\r[%d/%d] mean KLD %.6f", done, total, running).utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(r), as: UTF8.self))
            } else {
                print(String(format: "Mean KLD: %.6f ± %.6f  (max %.4f) over %d tokens", r.meanKLD, r.standardError, r.maxKLD, r.scoredTokens))
                print(String(format: "Same top token: %.2f%%", 100 * r.top1Agreement))
                print(String(format: "PPL: %.4f (base %.4f), ratio %+.3f%% ± %.3f%% (paired)", r.perplexity, r.basePerplexity,
                             100 * (exp(r.meanDeltaNLL) - 1), 100 * exp(r.meanDeltaNLL) * r.deltaNLLStandardError))
            }
        }
    }
}
