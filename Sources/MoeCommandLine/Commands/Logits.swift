import ArgumentParser
import Foundation
import SwiftMoE

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate token ids and write the logits of every position (and the experts chosen).",
        discussion: """
            Logits go to a float32 .npy of shape [tokens, vocab]; routing goes to JSON as \
            routing[layer][position] = [{"expert": e, "weight": w}, ...] (empty for dense layers). \
            Without --out, prints each position's top token and logit.
            """)

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "Comma-separated token ids, e.g. 1,5,9.") var tokens: TokenList
    @Option(help: "Write logits here as a float32 .npy [tokens, vocab].") var out: String?
    @Option(name: .customLong("experts-out"), help: "Write the experts chosen per layer and token here (JSON).") var expertsOut: String?

    func run() throws {
        try reportingErrors {
            let model = try runtime.resolved.open(model.model)
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
            if let line = pagingSummary(model) { Terminal.note(line) }
            if let expertsOut {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                try encoder.encode(["routing": routing]).write(to: URL(fileURLWithPath: expertsOut), options: .atomic)
                print("wrote \(expertsOut): routing of \(routing.count) layers x \(tokens.ids.count) tokens")
            }
        }
    }
}
