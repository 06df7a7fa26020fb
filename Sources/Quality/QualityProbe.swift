import Executor
import ExpertStore
import Foundation
import Runtime
import Synchronization

/// Measures how far a model with some experts replaced drifts from the model as loaded, on a
/// fixed set of token windows: the engine of `moe calibrate`'s sensitivity pass and of
/// `moe convert --max-ppl-increase`.
///
/// The base pass runs once and keeps, for every scored position, the base model's
/// probabilities (all of them for small vocabularies; the top ``topTokens`` plus the rest
/// as one bucket for large ones, which bounds the KL divergence from below) and the
/// logit of the actual next token. A variant pass reruns only the windows in which
/// a replaced expert was routed: in any other window every layer sees the same inputs and
/// routes the same way, so its outputs are the base's exactly.
///
/// A probe is `Sendable`: its base figures are immutable, and ``drift(_:)`` calls, which swap
/// the experts of the probe's own transformer, run one at a time (`drifts`).
public final class QualityProbe: Sendable {
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
    /// Per window, per scored position: the kept base probabilities p (and their token ids
    /// when not the whole vocabulary), Σ p·logit and Σ p over them, the base log-normalizer,
    /// the rest bucket's log-mass, and the target token's logit. A variant's KL divergence is
    /// then (Σ p·logit − Σ p·logit′) + (logZ′ − logZ)·Σ p: one pass of exponentials (for logZ′)
    /// and one dot product per position, computed the same way for base and variant so that a
    /// position whose logits did not change scores exactly zero.
    let baseProbs: [[Float]]
    let baseIndices: [[Int32]]
    let baseCross: [[Double]]
    let baseMass: [[Double]]
    let baseLogZ: [[Double]]
    let baseRest: [[Float]]
    let baseTarget: [[Float]]
    /// Held by a ``drift(_:)`` call while `overlay` holds its replacements.
    private let drifts = Mutex<Void>(())

    /// Runs the base pass over `windows` (each at least 2 tokens).
    public init(model: Model, windows: [[Int]]) throws {
        guard let length = windows.first?.count, length >= 2, windows.allSatisfy({ $0.count == length }) else {
            throw ExecutorError.contextFull(needed: 2, limit: windows.first?.count ?? 0)
        }
        self.model = model
        self.windows = windows
        scoredPerWindow = length - 1
        overlay = ExpertOverlay(base: model.transformer.experts)
        let transformer = try Transformer(source: model.source, experts: overlay, options: model.transformer.options)
        self.transformer = transformer
        let vocab = model.configuration.vocabSize
        keptTokens = windows.count * scoredPerWindow * vocab <= QualityProbe.fullVocabularyLimit ? vocab : min(vocab, QualityProbe.topTokens)
        var routed: [ExpertKey: Set<Int>] = [:]
        var counts: [ExpertKey: Int] = [:]
        var nll = 0.0
        var baseProbs: [[Float]] = [], baseIndices: [[Int32]] = [], baseCross: [[Double]] = [], baseMass: [[Double]] = []
        var baseLogZ: [[Double]] = [], baseRest: [[Float]] = [], baseTarget: [[Float]] = []
        for (w, window) in windows.enumerated() {
            // The probe's transformer shares the model's expert store: its passes are the model's operations too.
            let logits = try model.withExclusiveAccess {
                try transformer.forward(tokens: window, cache: transformer.makeCache(maxPositions: window.count), logits: .all) { layer, _, choices in
                    for c in choices {
                        routed[ExpertKey(layer: layer, expert: c.expert), default: []].insert(w)
                        counts[ExpertKey(layer: layer, expert: c.expert), default: 0] += 1
                    }
                }
            }
            var probs: [Float] = [], indices: [Int32] = [], cross: [Double] = [], mass: [Double] = [], logZs: [Double] = []
            var rest: [Float] = [], target: [Float] = []
            probs.reserveCapacity(scoredPerWindow * keptTokens)
            for p in 0..<scoredPerWindow {
                let row = logits[(p * vocab)..<((p + 1) * vocab)]
                let logZ = QualityProbe.logSumExp(row)
                let targetLogit = row[row.startIndex + window[p + 1]]
                target.append(targetLogit)
                logZs.append(logZ)
                nll -= Double(targetLogit) - logZ
                let chosen: [Int] = keptTokens == vocab
                    ? Array(0..<vocab)
                    : Array(row.indices.sorted { (row[$0], -$0) > (row[$1], -$1) }.prefix(keptTokens).map { $0 - row.startIndex })
                let start = probs.count
                var m = 0.0
                for i in chosen {
                    let pr = Float(exp(Double(row[row.startIndex + i]) - logZ))
                    probs.append(pr)
                    if keptTokens != vocab { indices.append(Int32(i)) }
                    m += Double(pr)
                }
                mass.append(m)
                let kept = keptTokens == vocab ? nil : Array(indices.suffix(keptTokens))
                cross.append(probs.withUnsafeBufferPointer { pb in QualityProbe.cross(pb.baseAddress.map { $0 + start }, indices: kept, row: row) })
                if keptTokens != vocab { rest.append(Float(log(max(1 - m, 1e-30)))) }
            }
            baseProbs.append(probs)
            baseIndices.append(indices)
            baseCross.append(cross)
            baseMass.append(mass)
            baseLogZ.append(logZs)
            baseRest.append(rest)
            baseTarget.append(target)
        }
        self.baseProbs = baseProbs
        self.baseIndices = baseIndices
        self.baseCross = baseCross
        self.baseMass = baseMass
        self.baseLogZ = baseLogZ
        self.baseRest = baseRest
        self.baseTarget = baseTarget
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
        try drifts.withLock { _ in try measureDrift(replacements) }
    }

    private func measureDrift(_ replacements: [ExpertKey: RequantizedExpert]) throws -> Drift {
        overlay.set(replacements)
        defer { overlay.set([:]) }
        var affected = Set<Int>()
        for key in replacements.keys { affected.formUnion(routedWindows[key] ?? []) }
        let vocab = model.configuration.vocabSize
        var kld = 0.0, delta = 0.0
        for w in affected.sorted() {
            let window = windows[w]
            let logits = try model.withExclusiveAccess {
                try transformer.forward(tokens: window, cache: transformer.makeCache(maxPositions: window.count), logits: .all)
            }
            for p in 0..<scoredPerWindow {
                let row = logits[(p * vocab)..<((p + 1) * vocab)]
                let logZ = QualityProbe.logSumExp(row)
                let logZBase = baseLogZ[w][p]
                delta += (Double(baseTarget[w][p]) - logZBase) - (Double(row[row.startIndex + window[p + 1]]) - logZ)
                let base = p * keptTokens
                let indices = keptTokens == vocab ? nil : Array(baseIndices[w][base..<(base + keptTokens)])
                let cross = baseProbs[w].withUnsafeBufferPointer { pb in
                    QualityProbe.cross(pb.baseAddress.map { $0 + base }, indices: indices, row: row)
                }
                var sum = (baseCross[w][p] - cross) + (logZ - logZBase) * baseMass[w][p]
                if let indices {
                    var qMass = 0.0
                    for i in indices { qMass += exp(Double(row[row.startIndex + Int(i)]) - logZ) }
                    let restLog = Double(baseRest[w][p])
                    sum += exp(restLog) * (restLog - log(max(1 - qMass, 1e-30)))
                }
                kld += max(sum, 0)
            }
        }
        let n = Double(windows.count * scoredPerWindow)
        return Drift(kld: kld / n, deltaNLL: delta / n, windowsRun: affected.count)
    }

    /// log Σ exp(row), in Double around the row's maximum.
    static func logSumExp(_ row: ArraySlice<Float>) -> Double {
        var m = -Float.infinity
        for v in row where v > m { m = v }
        var total = 0.0
        row.withUnsafeBufferPointer { b in
            var partial: Float = 0
            for (i, v) in b.enumerated() {
                partial += expf(v - m)
                if i & 255 == 255 {  // short Float runs, summed in Double
                    total += Double(partial)
                    partial = 0
                }
            }
            total += Double(partial)
        }
        return Double(m) + log(total)
    }

    /// Σ p[j]·row[index j] (index j = j over the whole row when `indices` is nil): Float
    /// lanes over runs of 256, summed in Double. The same order every call, so equal inputs
    /// give equal sums.
    static func cross(_ p: UnsafePointer<Float>?, indices: [Int32]?, row: ArraySlice<Float>) -> Double {
        guard let p else { return 0 }
        var total = 0.0
        if let indices {
            for (j, i) in indices.enumerated() { total += Double(p[j]) * Double(row[row.startIndex + Int(i)]) }
            return total
        }
        return row.withUnsafeBufferPointer { rb -> Double in
            guard let r = rb.baseAddress else { return 0 }
            let n = rb.count
            var i = 0
            while i + 8 <= n {
                var lanes = SIMD8<Float>(repeating: 0)
                let end = min(n - (n - i) % 8, i + 256)
                while i < end {
                    lanes += SIMD8<Float>(UnsafeBufferPointer(start: p + i, count: 8)) * SIMD8<Float>(UnsafeBufferPointer(start: r + i, count: 8))
                    i += 8
                }
                total += Double(lanes.sum())
            }
            while i < n {
                total += Double(p[i]) * Double(r[i])
                i += 1
            }
            return total
        }
    }

    /// Cuts `tokens` into `count` consecutive windows of `context` tokens (fewer if the text is
    /// short), each starting with `bos` when the tokenizer adds one, as `llama-perplexity` does.
    public static func windows(of tokens: [Int], context: Int, count: Int, bos: Int?) -> [[Int]] {
        (0..<windowCount(tokens: tokens.count, context: context, count: count)).map { i in
            var w = Array(tokens[(i * context)..<((i + 1) * context)])
            if let bos { w[0] = bos }
            return w
        }
    }

    /// How many windows ``windows(of:context:count:bos:)`` cuts from `tokens` tokens.
    public static func windowCount(tokens: Int, context: Int, count: Int) -> Int {
        min(count, tokens / max(context, 1))
    }
}
