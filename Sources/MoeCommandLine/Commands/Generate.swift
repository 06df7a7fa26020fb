import ArgumentParser
import Foundation
import SwiftMoE

struct Generate: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(abstract: "Greedy continuation of token ids.")
    static let preferredNew = 16

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Comma-separated prompt token ids.") var tokens: TokenList
    @Option(name: .customLong("max-new"), help: "How many tokens to generate (default: \(preferredNew), fewer if the model's context ends sooner).")
    var maxNew: Int?

    func check() throws {
        if let maxNew, maxNew < 1 { throw ValidationError("--max-new must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let model = try runtime.resolved.open(model.model)
            // Without --max-new, stop where the context ends (the library reports a prompt that fills it).
            let count = maxNew ?? max(1, min(Self.preferredNew, model.maxContext - tokens.ids.count))
            let start = Date()
            let generated = try model.generate(tokens: tokens.ids, maxNewTokens: count)
            let seconds = Date().timeIntervalSince(start)
            print(generated.map(String.init).joined(separator: ","))
            Terminal.note(String(format: "%d prompt + %d generated tokens in %.3f s, peak RSS %@ (%d bytes)", tokens.ids.count, generated.count, seconds,
                                 Units.formatBytes(ProcessStats.peakResidentBytes), ProcessStats.peakResidentBytes))
            if let line = pagingSummary(model) { Terminal.note(line) }
        }
    }
}
