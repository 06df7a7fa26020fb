import Executor
import Foundation
import ModelFormats
import Router
import Runtime

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
            let logits = try forward(tokens: window.tokens, cache: cache, logits: .all)
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
        let moeLayers = c.moeLayers
        var table = TransitionTable(layers: moeLayers, expertCount: c.expertCount)
        var start = 0
        while start < tokens.count {
            let chunk = Array(tokens[start..<min(start + window, tokens.count)])
            var routes = [[[Int]]](repeating: Array(repeating: [], count: moeLayers.count), count: chunk.count)
            let index = Dictionary(uniqueKeysWithValues: moeLayers.enumerated().map { ($1, $0) })
            _ = try forward(tokens: chunk, cache: try makeCache(chunk.count), logits: .last) { layer, position, choices in
                if let i = index[layer], position < routes.count { routes[position][i] = choices.map(\.expert) }
            }
            for route in routes { table.record(route) }
            start += chunk.count
            progress?(start, tokens.count)
        }
        return table
    }
}

/// How far a model's next-token distributions are from a base model's on the same text.
public struct KLDivergenceResult: Codable, Sendable {
    public var context: Int
    public var scoredTokens: Int
    /// Mean KL(base ‖ model) in nats per token, and its standard error.
    public var meanKLD: Double
    public var standardError: Double
    /// Largest per-token KL divergence seen.
    public var maxKLD: Double
    /// Fraction of positions where both models' most likely token agrees.
    public var top1Agreement: Double
    /// Perplexities of both models over the same positions.
    public var perplexity: Double
    public var basePerplexity: Double
    /// Mean per-token NLL difference (model − base) and its paired standard error: the
    /// resolution of a perplexity comparison on this text (PPL ratio = exp(meanDeltaNLL)).
    public var meanDeltaNLL: Double
    public var deltaNLLStandardError: Double
}

extension Model {
    /// `llama-perplexity --kl-divergence`: both models evaluate the same chunks (llama.cpp's
    /// layout: `context` tokens, BOS first, second half scored); for every scored position,
    /// KL(base ‖ self) of the softmax distributions and whether their argmax tokens agree.
    public func klDivergence(from base: Model, tokens: [Int], context: Int, bos: Int?, maxWindows: Int? = nil,
                             progress: ((Int, Int, Double) -> Void)? = nil) throws -> KLDivergenceResult {
        guard base.configuration.vocabSize == configuration.vocabSize else {
            throw ModelFormatError.invalidConfig(path: source.path, reason: "vocabulary of \(configuration.vocabSize) tokens differs from the base model's \(base.configuration.vocabSize)")
        }
        let vocab = configuration.vocabSize
        var chunks = tokens.count / context
        if let maxWindows { chunks = min(chunks, maxWindows) }
        guard chunks > 0 else { throw ExecutorError.contextFull(needed: context, limit: tokens.count) }
        var sum = 0.0, sumSquares = 0.0, worst = 0.0, agree = 0, count = 0, nll = 0.0, baseNLL = 0.0, deltaSquares = 0.0
        func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
            let m = Double(row.max() ?? 0)
            let total = row.reduce(0.0) { $0 + exp(Double($1) - m) }
            let logTotal = log(total) + m
            return row.map { Double($0) - logTotal }
        }
        for i in 0..<chunks {
            var chunk = Array(tokens[(i * context)..<((i + 1) * context)])
            if let bos { chunk[0] = bos }
            let ours = try forward(tokens: chunk, cache: try makeCache(context), logits: .all)
            let theirs = try base.forward(tokens: chunk, cache: try base.makeCache(context), logits: .all)
            for position in (context / 2)..<(context - 1) {
                let p = logSoftmax(theirs[(position * vocab)..<((position + 1) * vocab)])
                let q = logSoftmax(ours[(position * vocab)..<((position + 1) * vocab)])
                var kld = 0.0
                for v in 0..<vocab where p[v] > -60 { kld += exp(p[v]) * (p[v] - q[v]) }
                kld = max(kld, 0)
                sum += kld
                sumSquares += kld * kld
                worst = max(worst, kld)
                let target = chunk[position + 1]
                nll -= q[target]
                baseNLL -= p[target]
                deltaSquares += (p[target] - q[target]) * (p[target] - q[target])
                if p.indices.max(by: { p[$0] < p[$1] }) == q.indices.max(by: { q[$0] < q[$1] }) { agree += 1 }
                count += 1
            }
            progress?(i + 1, chunks, sum / Double(count))
        }
        let mean = sum / Double(count)
        let variance = max(0, sumSquares / Double(count) - mean * mean)
        let delta = (nll - baseNLL) / Double(count)
        let deltaVariance = max(0, deltaSquares / Double(count) - delta * delta)
        return KLDivergenceResult(
            context: context, scoredTokens: count, meanKLD: mean, standardError: count > 1 ? (variance / Double(count - 1)).squareRoot() : 0,
            maxKLD: worst, top1Agreement: Double(agree) / Double(count), perplexity: exp(nll / Double(count)),
            basePerplexity: exp(baseNLL / Double(count)), meanDeltaNLL: delta,
            deltaNLLStandardError: count > 1 ? (deltaVariance / Double(count - 1)).squareRoot() : 0)
    }
}
