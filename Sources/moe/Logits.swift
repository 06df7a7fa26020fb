import ArgumentParser
import Foundation
import SwiftMoE

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate token ids and write the logits of every position (and the experts chosen).",
        discussion: """
            Logits go to a float32 .npy of shape [tokens, vocab]; routing goes to JSON as
            routing[layer][position] = [{"expert": e, "weight": w}, ...] (empty for dense layers).
            Without --out, prints each position's top token and logit.
            """)

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Comma-separated token ids, e.g. 1,5,9.") var tokens: TokenList
    @Option(help: "Write logits here as a float32 .npy [tokens, vocab].") var out: String?
    @Option(name: .customLong("experts-out"), help: "Write the experts chosen per layer and token here (JSON).") var expertsOut: String?

    func run() throws {
        try reportingErrors {
            let model = try runtime.open(model.model)
            let (logits, routing) = try model.evaluate(tokens: tokens.ids)
            if let out {
                try NPY.write(Array(logits.joined()), shape: [logits.count, model.configuration.vocabSize], to: out)
                print("wrote \(out): [\(logits.count), \(model.configuration.vocabSize)] float32")
            } else {
                for (i, row) in logits.enumerated() {
                    let best = Model.argmax(row)
                    print("position \(i): token \(tokens.ids[i]) -> top \(best) (logit \(row[best]))")
                }
            }
            if let line = pagingSummary(model) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            if let expertsOut {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                try encoder.encode(["routing": routing]).write(to: URL(fileURLWithPath: expertsOut), options: .atomic)
                print("wrote \(expertsOut): routing of \(routing.count) layers x \(tokens.ids.count) tokens")
            }
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Greedy continuation of token ids.")

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Comma-separated prompt token ids.") var tokens: TokenList
    @Option(name: .customLong("max-new"), help: "How many tokens to generate.") var maxNew: Int = 16

    func validate() throws {
        guard maxNew >= 1 else { throw ValidationError("--max-new must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            let model = try runtime.open(model.model)
            let start = Date()
            let generated = try model.generate(tokens: tokens.ids, maxNewTokens: maxNew)
            let seconds = Date().timeIntervalSince(start)
            print(generated.map(String.init).joined(separator: ","))
            FileHandle.standardError.write(Data(String(format: "%d prompt + %d generated tokens in %.3f s, peak RSS %@ (%d bytes)\n", tokens.ids.count, generated.count, seconds, Units.formatBytes(ProcessStats.peakResidentBytes), ProcessStats.peakResidentBytes).utf8))
            if let line = pagingSummary(model) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
    }
}
