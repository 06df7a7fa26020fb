import Foundation

/// Measures how far a model with some experts replaced drifts from the model as loaded, on a
/// fixed set of token windows: the engine of `moe calibrate`'s sensitivity pass and of
/// `moe convert --max-ppl-increase`.
///
/// The base pass runs once and keeps, for every scored position, the base model's
/// log-probabilities (all of them for small vocabularies; the top ``topTokens`` plus the rest
/// as one bucket for large ones, which bounds the KL divergence from below) and the
/// log-probability of the actual next token. A variant pass reruns only the windows in which
/// a replaced expert was routed: in any other window every layer sees the same inputs and
/// routes the same way, so its outputs are the base's exactly.
public final class QualityProbe: @unchecked Sendable {
    public let model: Model
    public let windows: [[Int]]
    /// Positions of each window whose next-token distribution is scored: all but the last.
    public let scoredPerWindow: Int
    /// Mean NLL of the base model over all scored positions (nats/token).
    public let baseNLL: Double
    /// The windows each expert was routed in by the base model.
    public let routedWindows: [ExpertKey: [Int]]
    /// Tokens routed to each expert by the base model, over all windows.
    public let routedTokens: [ExpertKey: Int]
    /// Base distributions kept per position: every token, or the top ones plus a rest bucket.
    public let keptTokens: Int
    public static let fullVocabularyLimit = 64 << 20  // positions × vocabulary kept in full (256 MB)
    public static let topTokens = 256

    let overlay: ExpertOverlay
    let transformer: Transformer
    /// Per window, per scored position: kept log-probabilities (and their token ids when not
    /// the whole vocabulary), the rest bucket's log-mass, and the target's log-probability.
    var baseLogProbs: [[Float]] = []
    var baseIndices: [[Int32]] = []
    var baseRest: [[Float]] = []
    var baseTarget: [[Float]] = []

    /// Runs the base pass over `windows` (each at least 2 tokens).
    public init(model: Model, windows: [[Int]]) throws {
        guard let length = windows.first?.count, length >= 2, windows.allSatisfy({ $0.count == length }) else {
            throw ExecutorError.contextFull(needed: 2, limit: windows.first?.count ?? 0)
        }
        self.model = model
        self.windows = windows
        scoredPerWindow = length - 1
        overlay = ExpertOverlay(base: model.transformer.experts)
        transformer = try Transformer(source: model.source, experts: overlay, options: model.transformer.options)
        let vocab = model.configuration.vocabSize
        keptTokens = windows.count * scoredPerWindow * vocab <= QualityProbe.fullVocabularyLimit ? vocab : min(vocab, QualityProbe.topTokens)
        var routed: [ExpertKey: Set<Int>] = [:]
        var counts: [ExpertKey: Int] = [:]
        var nll = 0.0
        for (w, window) in windows.enumerated() {
            let logits = try transformer.forward(tokens: window, cache: transformer.makeCache(maxPositions: window.count), logits: .all) { layer, _, choices in
                for c in choices {
                    routed[ExpertKey(layer: layer, expert: c.expert), default: []].insert(w)
                    counts[ExpertKey(layer: layer, expert: c.expert), default: 0] += 1
                }
            }
            var kept: [Float] = [], indices: [Int32] = [], rest: [Float] = [], target: [Float] = []
            kept.reserveCapacity(scoredPerWindow * keptTokens)
            for p in 0..<scoredPerWindow {
                let logp = QualityProbe.logSoftmax(logits[(p * vocab)..<((p + 1) * vocab)])
                let t = logp[window[p + 1]]
                target.append(t)
                nll -= Double(t)
                if keptTokens == vocab {
                    kept += logp
                } else {
                    let top = logp.indices.sorted { (logp[$0], -$0) > (logp[$1], -$1) }.prefix(keptTokens)
                    var mass = 0.0
                    for i in top {
                        indices.append(Int32(i))
                        kept.append(logp[i])
                        mass += exp(Double(logp[i]))
                    }
                    rest.append(Float(log(max(1 - mass, 1e-30))))
                }
            }
            baseLogProbs.append(kept)
            baseIndices.append(indices)
            baseRest.append(rest)
            baseTarget.append(target)
        }
        routedWindows = routed.mapValues { $0.sorted() }
        routedTokens = counts
        baseNLL = nll / Double(windows.count * scoredPerWindow)
    }

    /// What replacing experts did, averaged over every scored position of every window.
    public struct Drift: Sendable, Equatable, Codable {
        /// Mean KL(base ‖ variant), nats/token.
        public var kld: Double
        /// Mean NLL of the variant minus the base's, nats/token (perplexity ratio = exp of it).
        public var deltaNLL: Double
        /// Windows that had to be rerun.
        public var windowsRun: Int
    }

    /// Runs the model with `replacements` (only the windows they can change).
    public func drift(_ replacements: [ExpertKey: RequantizedExpert]) throws -> Drift {
        overlay.set(replacements)
        defer { overlay.set([:]) }
        var affected = Set<Int>()
        for key in replacements.keys { affected.formUnion(routedWindows[key] ?? []) }
        let vocab = model.configuration.vocabSize
        var kld = 0.0, delta = 0.0
        for w in affected.sorted() {
            let window = windows[w]
            let logits = try transformer.forward(tokens: window, cache: transformer.makeCache(maxPositions: window.count), logits: .all)
            for p in 0..<scoredPerWindow {
                let q = QualityProbe.logSoftmax(logits[(p * vocab)..<((p + 1) * vocab)])
                delta += Double(baseTarget[w][p] - q[window[p + 1]])
                var sum = 0.0
                let kept = baseLogProbs[w], base = p * keptTokens
                if keptTokens == vocab {
                    for v in 0..<vocab where kept[base + v] > -60 {
                        let lp = Double(kept[base + v])
                        sum += exp(lp) * (lp - Double(q[v]))
                    }
                } else {
                    var qMass = 0.0
                    for j in 0..<keptTokens {
                        let lp = Double(kept[base + j]), lq = Double(q[Int(baseIndices[w][base + j])])
                        sum += exp(lp) * (lp - lq)
                        qMass += exp(lq)
                    }
                    let rest = Double(baseRest[w][p])
                    sum += exp(rest) * (rest - log(max(1 - qMass, 1e-30)))
                }
                kld += max(sum, 0)
            }
        }
        let n = Double(windows.count * scoredPerWindow)
        return Drift(kld: kld / n, deltaNLL: delta / n, windowsRun: affected.count)
    }

    static func logSoftmax(_ row: ArraySlice<Float>) -> [Float] {
        var m = -Float.infinity
        for v in row where v > m { m = v }
        var total = 0.0
        for v in row { total += exp(Double(v - m)) }
        let shift = m + Float(log(total))
        return row.map { $0 - shift }
    }

    /// Cuts `tokens` into `count` consecutive windows of `context` tokens (fewer if the text is
    /// short), each starting with `bos` when the tokenizer adds one, as `llama-perplexity` does.
    public static func windows(of tokens: [Int], context: Int, count: Int, bos: Int?) -> [[Int]] {
        let n = min(count, tokens.count / max(context, 1))
        return (0..<n).map { i in
            var w = Array(tokens[(i * context)..<((i + 1) * context)])
            if let bos { w[0] = bos }
            return w
        }
    }
}
