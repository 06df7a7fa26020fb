import ArgumentParser
import Foundation
import SwiftMoE

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode tokens/s (median and spread) and peak RSS, like llama-bench.")

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(name: .customLong("prompt-tokens"), help: "Prompt length for the prefill measurement.") var promptTokens: Int = 128
    @Option(name: .customLong("gen-tokens"), help: "Tokens generated for the decode measurement.") var genTokens: Int = 32
    @Option(help: "Measured runs (after one warm-up run).") var repetitions: Int = 3
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        guard promptTokens >= 1 else { throw ValidationError("--prompt-tokens must be at least 1") }
        guard genTokens >= 0 else { throw ValidationError("--gen-tokens must not be negative") }
        guard repetitions >= 1, repetitions <= 1000 else { throw ValidationError("--repetitions must be between 1 and 1000") }
    }

    func run() throws {
        try reportingErrors {
            let model = try runtime.open(model.model)
            let result = try model.benchmark(promptTokens: promptTokens, genTokens: genTokens, repetitions: repetitions) { run in
                if !json { FileHandle.standardError.write(Data("run \(run)/\(repetitions) done\n".utf8)) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(result), as: UTF8.self))
            } else {
                func row(_ name: String, _ tokens: Int, _ s: BenchmarkResult.Spread) -> String {
                    String(format: "%-8@ %6d tokens  %9.2f t/s  (min %.2f, max %.2f)", name, tokens, s.median, s.min, s.max)
                }
                print("model    \(result.model)")
                print("threads  \(result.threads), kernels \(result.kernels) (\(result.isa)), kv cache \(result.kv_cache)")
                print(row("prefill", promptTokens, result.prefill.tokens_per_second))
                print(row("decode", genTokens, result.decode.tokens_per_second))
                print("peak RSS \(Units.formatBytes(result.peak_rss_bytes))")
                if let line = pagingSummary(model) { print(line) }
            }
        }
    }
}
