@_exported import ExpertStore
@_exported import Executor
@_exported import ModelFormats
@_exported import Quantization
@_exported import Router
@_exported import Tokenizer
@_exported import ChatTemplate

/// A loaded model, the entry point for apps: open a GGUF file or Hugging Face directory,
/// evaluate token sequences, generate.
///
/// ```swift
/// let model = try Model(path: "mixtral.gguf")
/// let logits = try model.logits(tokens: [1, 415, 2936])   // [position][vocab]
/// let continuation = try model.generate(tokens: [1, 415], maxNewTokens: 8)
/// ```
public final class Model: @unchecked Sendable {
    public let source: ModelSource
    public let transformer: Transformer

    public init(path: String, options: ExecutorOptions = ExecutorOptions()) throws {
        source = try ModelSource(path: path)
        transformer = try Transformer(source: source, options: options)
    }

    public var configuration: ModelConfiguration { source.configuration }

    /// Logits of every position of `tokens` evaluated from an empty context, and the experts
    /// every MoE layer chose for every token (`routing[layer][position]`; empty for dense layers).
    public func evaluate(tokens: [Int]) throws -> (logits: [[Float]], routing: [[[ExpertChoice]]]) {
        let c = configuration
        var routing = [[[ExpertChoice]]](repeating: [], count: c.layerCount)
        for l in 0..<c.layerCount where c.layerKinds[l] == .moe {
            routing[l] = Array(repeating: [], count: tokens.count)
        }
        let flat = try transformer.forward(tokens: tokens, cache: transformer.makeCache(maxPositions: tokens.count)) { layer, position, choices in
            routing[layer][position] = choices
        }
        let logits = stride(from: 0, to: flat.count, by: c.vocabSize).map { Array(flat[$0..<($0 + c.vocabSize)]) }
        return (logits, routing)
    }

    /// Logits of every position of `tokens`, `[position][vocab]`.
    public func logits(tokens: [Int]) throws -> [[Float]] { try evaluate(tokens: tokens).logits }

    /// Greedy continuation: evaluates `tokens`, then appends the most likely token `maxNewTokens`
    /// times (or until `stop` returns true for a new token). Returns only the new tokens.
    public func generate(tokens: [Int], maxNewTokens: Int, stop: (Int) -> Bool = { _ in false }) throws -> [Int] {
        guard maxNewTokens > 0 else { return [] }
        let cache = transformer.makeCache(maxPositions: tokens.count + maxNewTokens)
        var logits = try transformer.forward(tokens: tokens, cache: cache, logits: .last)
        var generated: [Int] = []
        while true {
            let next = Model.argmax(logits)
            generated.append(next)
            if generated.count == maxNewTokens || stop(next) { break }
            logits = try transformer.forward(tokens: [next], cache: cache, logits: .last)
        }
        return generated
    }

    /// Index of the largest value (the first one on ties).
    public static func argmax(_ values: [Float]) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}
