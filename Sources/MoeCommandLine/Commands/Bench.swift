import ArgumentParser
import Foundation
import SwiftMoE

struct Bench: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode tokens/s (median and spread) and peak RSS, like llama-bench.")
    /// llama-bench's sizes, when the model's context holds them.
    static let preferredPrompt = 128
    static let preferredGen = 32

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement (default: \(preferredPrompt), less on a model whose context is shorter). Longer prompts measure attention over more positions.")
    var promptTokens: Int?
    @Option(name: .customLong("gen-tokens"), help: "Tokens generated for the decode measurement (default: \(preferredGen), less on a model whose context is shorter). More gives steadier numbers and a longer run.")
    var genTokens: Int?
    @Option(help: "Measured runs (after one warm-up run). More gives a steadier median and a longer run.") var repetitions: Int = 3
    @Flag(help: "Print JSON instead of text.") var json = false

    func check() throws {
        if let promptTokens, promptTokens < 1 { throw ValidationError("--prompt-tokens must be at least 1") }
        if let genTokens, genTokens < 0 { throw ValidationError("--gen-tokens must not be negative") }
        guard repetitions >= 1, repetitions <= 1000 else { throw ValidationError("--repetitions must be between 1 and 1000") }
    }

    /// The prompt and generated lengths for a model that runs with `positions` positions (one is
    /// left for the token the last step produces): given sizes as they are, the defaults shrunk
    /// in proportion when they do not fit.
    func sizes(positions: Int) -> (prompt: Int, gen: Int) {
        let room = max(positions - 1, 1)
        switch (promptTokens, genTokens) {
        case let (p?, g?): return (p, g)
        case let (p?, nil): return (p, max(0, min(Self.preferredGen, room - p)))
        case let (nil, g?): return (max(1, min(Self.preferredPrompt, room - g)), g)
        case (nil, nil):
            let total = Self.preferredPrompt + Self.preferredGen
            guard total > room else { return (Self.preferredPrompt, Self.preferredGen) }
            let prompt = max(1, room * Self.preferredPrompt / total)
            return (prompt, room - prompt)
        }
    }

    func run() throws {
        try reportingErrors {
            let model = try runtime.resolved.open(model.model)
            let (prompt, gen) = sizes(positions: model.maxContext)
            let result = try model.benchmark(promptTokens: prompt, genTokens: gen, repetitions: repetitions) { run in
                if !json { Terminal.note("run \(run)/\(repetitions) done") }
            }
            if json {
                print(try prettyJSON(result))
            } else {
                func row(_ name: String, _ tokens: Int, _ s: BenchmarkResult.Spread) -> String {
                    String(format: "%-8@ %6d tokens  %9.2f t/s  (min %.2f, max %.2f)", name, tokens, s.median, s.min, s.max)
                }
                print("model    \(result.model)")
                print("threads  \(result.threads), kernels \(result.kernels) (\(result.isa)), kv cache \(result.kv_cache), on miss \(result.on_miss)")
                print(row("prefill", prompt, result.prefill.tokens_per_second))
                print(row("decode", gen, result.decode.tokens_per_second))
                print("peak RSS \(Units.formatBytes(result.peak_rss_bytes))")
                if let line = pagingSummary(model) { print(line) }
            }
        }
    }
}
