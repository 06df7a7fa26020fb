import ModelFormats

/// One routed expert and the weight its output gets.
public struct ExpertChoice: Equatable, Sendable, Codable {
    public var expert: Int
    public var weight: Float

    public init(expert: Int, weight: Float) {
        self.expert = expert
        self.weight = weight
    }
}

/// Turns a gate's logits into expert choices following the family's rule (docs/design.md §2).
///
/// All arithmetic is f32, in the order transformers uses, so choices and weights match it.
public struct Router: Sendable {
    public let routing: ModelConfiguration.Routing
    public let expertCount: Int
    public let topK: Int
    /// Added to the scores to choose experts, not to weight them (one per expert), when the
    /// family has one (DeepSeek-V3's `e_score_correction_bias`).
    public let selectionBias: [Float]?

    public init(configuration: ModelConfiguration, selectionBias: [Float]? = nil) {
        routing = configuration.routing
        expertCount = configuration.expertCount
        topK = configuration.expertsPerToken
        self.selectionBias = selectionBias
    }

    public init(routing: ModelConfiguration.Routing, expertCount: Int, topK: Int, selectionBias: [Float]? = nil) {
        self.routing = routing
        self.expertCount = expertCount
        self.topK = topK
        self.selectionBias = selectionBias
    }

    /// Chooses the top-k experts for one token from its `expertCount` gate logits.
    ///
    /// Scores are the softmax or the sigmoids of the logits; experts are chosen by score (plus the
    /// selection bias, within the best groups when the routing has groups), largest first, ties to
    /// the lower expert index; each is weighted by its unbiased score, optionally renormalised over
    /// the k, then multiplied by the routing's scale.
    public func route(logits: UnsafeBufferPointer<Float>) -> [ExpertChoice] {
        precondition(logits.count == expertCount, "router logits must have one entry per expert")
        var scores = [Float](repeating: 0, count: expertCount)
        switch routing.scoring {
        case .softmax:
            Router.softmax(logits, into: &scores)
        case .sigmoid:
            for i in 0..<expertCount { scores[i] = 1 / (1 + expf(-logits[i])) }
        }
        var selection = scores
        if let selectionBias, selectionBias.count == expertCount {
            for i in 0..<expertCount { selection[i] += selectionBias[i] }
        }
        if let groups = routing.groups, groups.count > 1 { Router.limitToGroups(&selection, groups) }
        let chosen = Router.topK(selection, k: topK)
        var choices = chosen.map { ExpertChoice(expert: $0, weight: scores[$0]) }
        if routing.normalizeTopK {
            var sum: Float = 0
            for c in choices { sum += c.weight }
            if sum > 0 {
                for i in choices.indices { choices[i].weight /= sum }
            }
        }
        if routing.scale != 1 {
            for i in choices.indices { choices[i].weight *= routing.scale }
        }
        return choices
    }

    public func route(logits: [Float]) -> [ExpertChoice] {
        logits.withUnsafeBufferPointer { route(logits: $0) }
    }

    /// How likely each expert is to be chosen, for predictors: the softmax itself for softmax
    /// routers; for sigmoid routers the selection scores (bias added, dropped groups at 0, clamped
    /// at 0) divided by their sum. Ranks experts as ``route(logits:)`` chooses them.
    public func selectionProbabilities(logits: UnsafeBufferPointer<Float>) -> [Float] {
        var scores = [Float](repeating: 0, count: logits.count)
        if routing.scoring == .softmax, selectionBias == nil, routing.groups.map({ $0.count <= 1 }) ?? true {
            Router.softmax(logits, into: &scores)
            return scores
        }
        for i in 0..<logits.count {
            scores[i] = routing.scoring == .softmax ? logits[i] : 1 / (1 + expf(-logits[i]))
        }
        if routing.scoring == .softmax { Router.softmax(logits, into: &scores) }
        if let selectionBias, selectionBias.count == scores.count {
            for i in scores.indices { scores[i] += selectionBias[i] }
        }
        if let groups = routing.groups, groups.count > 1 {
            Router.limitToGroups(&scores, .init(count: groups.count, used: groups.used, score: groups.score, masking: .zero))
        }
        var sum: Float = 0
        for i in scores.indices {
            scores[i] = max(scores[i], 0)
            sum += scores[i]
        }
        if sum > 0 { for i in scores.indices { scores[i] /= sum } }
        return scores
    }

    public func selectionProbabilities(logits: [Float]) -> [Float] {
        logits.withUnsafeBufferPointer { selectionProbabilities(logits: $0) }
    }

    /// Keeps the `groups.used` best groups' selection scores and masks the others (to 0 as
    /// transformers does, or out of reach as llama.cpp does). A group scores its best expert or
    /// the sum of its best two; groups are ranked with ties to the lower index.
    static func limitToGroups(_ selection: inout [Float], _ groups: ModelConfiguration.Routing.Groups) {
        let size = selection.count / groups.count
        guard size > 0 else { return }
        var groupScores = [Float](repeating: 0, count: groups.count)
        for g in 0..<groups.count {
            let best = topK(Array(selection[(g * size)..<((g + 1) * size)]), k: groups.score == .max ? 1 : 2)
            groupScores[g] = best.reduce(0) { $0 + selection[g * size + $1] }
        }
        let kept = Set(topK(groupScores, k: groups.used))
        for g in 0..<groups.count where !kept.contains(g) {
            for e in (g * size)..<((g + 1) * size) { selection[e] = groups.masking == .zero ? 0 : -.infinity }
        }
    }

    /// Numerically stable softmax.
    public static func softmax(_ x: UnsafeBufferPointer<Float>, into out: inout [Float]) {
        var maxValue = -Float.infinity
        for v in x where v > maxValue { maxValue = v }
        var sum: Float = 0
        for i in 0..<x.count {
            let e = expf(x[i] - maxValue)
            out[i] = e
            sum += e
        }
        for i in 0..<x.count { out[i] /= sum }
    }

    /// Indices of the `k` largest scores, largest first; equal scores keep index order.
    public static func topK(_ scores: [Float], k: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in scores.indices {
            // Insert i after every kept index whose score is >= scores[i] (stable for ties).
            var position = best.count
            while position > 0, scores[best[position - 1]] < scores[i] { position -= 1 }
            if position < k {
                best.insert(i, at: position)
                if best.count > k { best.removeLast() }
            }
        }
        return best
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
