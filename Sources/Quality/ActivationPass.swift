import Executor
import ExpertStore
import Foundation
import ModelFormats
import Router
import Runtime

extension Model {
    public struct ActivationProgress: Sendable {
        public var tokensDone: Int
        public var totalTokens: Int
        /// Tokens routed in this run (the rest came from the file being resumed).
        public var routedNow: Int
    }

    /// `moe calibrate`'s routing pass: routes `tokens` in windows of `settings.context` (each
    /// from an empty context) and records, in the same single pass, the routing statistics
    /// (``TransitionTable``) and every routed expert's ``ActivationStatistics``.
    ///
    /// Experts come from the model's own store, so memory stays what a run of the model needs;
    /// the statistics add experts × (hidden + 3 × FFN) floats. `save` is called with the state
    /// so far at most every `saveInterval` seconds and at the end; passing a saved state back as
    /// `resume` continues after its last window, with the same result as an uninterrupted run.
    public func gatherActivations(
        tokens: [Int], settings: ActivationStatistics.Settings, resume: (TransitionTable, ActivationStatistics)? = nil,
        saveInterval: Double = 30, save: (TransitionTable, ActivationStatistics) throws -> Void,
        progress: ((ActivationProgress) -> Void)? = nil
    ) throws -> (TransitionTable, ActivationStatistics) {
        let c = configuration
        let moeLayers = c.moeLayers
        guard !moeLayers.isEmpty else {
            throw ModelFormatError.invalidConfig(path: source.path, reason: "the model has no MoE layers to calibrate")
        }
        let window = max(settings.context, 1)
        var table = TransitionTable(layers: moeLayers, expertCount: c.expertCount)
        var start = ActivationStatistics(settings: settings, layers: moeLayers, expertCount: c.expertCount,
                                         hiddenSize: c.hiddenSize, ffnSize: c.expertFFNSize)
        if let (routing, stats) = resume {
            guard stats.settings == settings, routing.tokens == stats.tokens, routing.layers == moeLayers,
                  stats.hiddenSize == c.hiddenSize, stats.ffnSize == c.expertFFNSize, stats.tokens % window == 0 || stats.isComplete else {
                throw PredictorError.mismatch(path: settings.model, reason: "the activations being resumed were gathered with other settings (model, text or context)")
            }
            table = routing
            start = stats
        }
        let accumulator = ActivationAccumulator(start)
        var options = transformer.options
        options.expertActivations = { accumulator.add($0) }
        let observed = try Transformer(source: source, experts: transformer.experts, options: options)
        let index = Dictionary(uniqueKeysWithValues: moeLayers.enumerated().map { ($1, $0) })
        var position = start.tokens
        var lastSave = Date()
        let first = position
        while position < tokens.count {
            let chunk = Array(tokens[position..<min(position + window, tokens.count)])
            var routes = [[[Int]]](repeating: Array(repeating: [], count: moeLayers.count), count: chunk.count)
            // The observed transformer shares the model's expert store: its passes are the model's operations too.
            _ = try withExclusiveAccess {
                try observed.forward(tokens: chunk, cache: observed.makeCache(maxPositions: chunk.count), logits: .last) { layer, p, choices in
                    if let i = index[layer], p < routes.count { routes[p][i] = choices.map(\.expert) }
                }
            }
            for route in routes { table.record(route) }
            position += chunk.count
            accumulator.setTokens(position)
            progress?(ActivationProgress(tokensDone: position, totalTokens: tokens.count, routedNow: position - first))
            if Date().timeIntervalSince(lastSave) >= saveInterval, position < tokens.count {
                try save(table, accumulator.statistics)
                lastSave = Date()
            }
        }
        let result = (table, accumulator.statistics)
        try save(result.0, result.1)
        return result
    }
}
