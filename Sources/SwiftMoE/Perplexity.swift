import Foundation

/// Perplexity of a model on a token sequence, by one of two published methods.
public struct PerplexityResult: Codable, Sendable {
    public var method: String
    public var context: Int
    public var stride: Int?
    /// Tokens whose probability was scored.
    public var scoredTokens: Int
    public var windows: Int
    /// Mean negative log-likelihood (nats per token).
    public var meanNLL: Double
    public var perplexity: Double
    /// Standard error of the perplexity, from the spread of per-token NLL (llama.cpp's estimate:
    /// PPL × sqrt(var(NLL) / (N − 1))).
    public var standardError: Double
    public var seconds: Double
}

extension Model {
    public enum PerplexityMethod: Sendable {
        /// llama.cpp's `llama-perplexity`: non-overlapping chunks of `context` tokens, each
        /// starting with BOS (when the tokenizer adds one); only the second half of each chunk
        /// is scored, so every scored token sees at least `context/2` tokens of context.
        case llamaCpp
        /// transformers' sliding window ("Perplexity of fixed-length models"): windows of
        /// `context` tokens advancing by `stride`; each window scores only the tokens no earlier
        /// window scored.
        case slidingWindow(stride: Int)
    }

    /// - Parameters:
    ///   - tokens: the whole text, tokenized (with BOS if the tokenizer adds one).
    ///   - bos: the BOS id to put at the start of each llama.cpp chunk, if any.
    ///   - progress: called after each window with (done, total, running perplexity).
    public func perplexity(
        tokens: [Int], context: Int, method: PerplexityMethod, bos: Int?, maxWindows: Int? = nil,
        progress: ((Int, Int, Double) -> Void)? = nil
    ) throws -> PerplexityResult {
        let start = Date()
        guard context >= 2 else { throw ExecutorError.contextFull(needed: 2, limit: context) }
        var windows: [(tokens: [Int], scored: Range<Int>)] = []  // scored: positions whose next token is predicted
        switch method {
        case .llamaCpp:
            let chunks = tokens.count / context
            for i in 0..<chunks {
                var chunk = Array(tokens[(i * context)..<((i + 1) * context)])
                if let bos { chunk[0] = bos }
                windows.append((chunk, (context / 2)..<(context - 1)))
            }
        case let .slidingWindow(stride):
            guard stride >= 1 else { throw ExecutorError.contextFull(needed: 1, limit: 0) }
            var previousEnd = 0
            var begin = 0
            while begin < tokens.count {
                let end = min(begin + context, tokens.count)
                let window = Array(tokens[begin..<end])
                // Targets are tokens [max(previousEnd, begin + 1), end); predicted from the position before.
                let firstTarget = max(previousEnd, begin + 1)
                if firstTarget < end { windows.append((window, (firstTarget - 1 - begin)..<(end - 1 - begin))) }
                previousEnd = end
                if end == tokens.count { break }
                begin += stride
            }
        }
        if let maxWindows { windows = Array(windows.prefix(maxWindows)) }
        guard !windows.isEmpty else {
            throw ExecutorError.contextFull(needed: context, limit: tokens.count)
        }
        let vocab = configuration.vocabSize
        var sum = 0.0, sumSquares = 0.0, count = 0
        for (w, window) in windows.enumerated() {
            let cache = try makeCache(window.tokens.count)
            let logits = try transformer.forward(tokens: window.tokens, cache: cache, logits: .all)
            for position in window.scored {
                let row = logits[(position * vocab)..<((position + 1) * vocab)]
                let target = window.tokens[position + 1]
                var maxLogit = -Float.infinity
                for v in row where v > maxLogit { maxLogit = v }
                var total = 0.0
                for v in row { total += exp(Double(v - maxLogit)) }
                let nll = log(total) - Double(row[row.startIndex + target] - maxLogit)
                sum += nll
                sumSquares += nll * nll
                count += 1
            }
            progress?(w + 1, windows.count, exp(sum / Double(max(count, 1))))
        }
        let mean = sum / Double(count)
        let variance = max(0, sumSquares / Double(count) - mean * mean)
        let ppl = exp(mean)
        let standardError = count > 1 ? ppl * (variance / Double(count - 1)).squareRoot() : 0
        var strideValue: Int? = nil
        if case let .slidingWindow(stride) = method { strideValue = stride }
        return PerplexityResult(
            method: strideValue == nil ? "llama.cpp (chunks of n_ctx, second half scored)" : "sliding window (transformers)",
            context: context, stride: strideValue, scoredTokens: count, windows: windows.count, meanNLL: mean,
            perplexity: ppl, standardError: standardError, seconds: Date().timeIntervalSince(start))
    }
}

extension Model {
    /// Routes `tokens` (in windows of `window`) and counts expert frequencies and layer-to-layer
    /// transitions: the statistics the `path` predictor uses (EdgeMoE) and `moe trace` reports.
    public func calibrate(tokens: [Int], window: Int, progress: ((Int, Int) -> Void)? = nil) throws -> TransitionTable {
        let c = configuration
        let moeLayers = (0..<c.layerCount).filter { c.layerKinds[$0] == .moe }
        var table = TransitionTable(layers: moeLayers, expertCount: c.expertCount)
        var start = 0
        while start < tokens.count {
            let chunk = Array(tokens[start..<min(start + window, tokens.count)])
            var routes = [[[Int]]](repeating: Array(repeating: [], count: moeLayers.count), count: chunk.count)
            let index = Dictionary(uniqueKeysWithValues: moeLayers.enumerated().map { ($1, $0) })
            _ = try transformer.forward(tokens: chunk, cache: try makeCache(chunk.count), logits: .last) { layer, position, choices in
                if let i = index[layer], position < routes.count { routes[position][i] = choices.map(\.expert) }
            }
            for route in routes { table.record(route) }
            start += chunk.count
            progress?(start, tokens.count)
        }
        return table
    }
}
