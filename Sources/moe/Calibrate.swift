import ArgumentParser
import Foundation
import SwiftMoE

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record which experts fire on a text: per-layer frequencies and layer-to-layer transition statistics (for --prefetch path/hybrid).",
        discussion: "Writes MODEL.calibration.json next to the model unless -o is given; runs pick it up automatically.")

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "A UTF-8 text file, ideally like what the model will see.") var text: String
    @Option(name: .shortAndLong, help: "Where to write the statistics (default: MODEL.calibration.json).") var output: String?
    @Option(name: .customLong("ctx-size"), help: "Tokens evaluated per window.") var ctxSize: Int = 512
    @Option(name: .customLong("max-tokens"), help: "Stop after this many tokens of the text (default: all).") var maxTokens: Int?

    func validate() throws {
        guard ctxSize >= 2 else { throw ValidationError("--ctx-size must be at least 2") }
    }

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: text) else { throw ValidationError("cannot read --text \(text)") }
            var options = runtime
            if options.context == nil { options.context = ctxSize }
            options.prefetch = .none
            let model = try options.open(model.model)
            var tokens = try Tokenizer(path: model.source.path).encode(String(decoding: data, as: UTF8.self))
            if let maxTokens { tokens = Array(tokens.prefix(maxTokens)) }
            let table = try model.calibrate(tokens: tokens, window: ctxSize) { done, total in
                FileHandle.standardError.write(Data("\r[\(done)/\(total)] tokens routed".utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            let out = output ?? Model.calibrationPath(for: model.source.path)
            try table.write(to: out)
            print("wrote \(out): \(table.tokens) tokens, \(table.layers.count) MoE layers × \(table.expertCount) experts")
            for (i, layer) in table.layers.enumerated() {
                let freq = table.frequency[i]
                let total = Double(max(freq.reduce(0, +), 1))
                let top = freq.enumerated().sorted { $0.element > $1.element }.prefix(4).map { String(format: "e%d %.1f%%", $0.offset, 100 * Double($0.element) / total) }
                print("layer \(layer): " + top.joined(separator: ", "))
            }
        }
    }
}
