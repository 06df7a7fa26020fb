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

    public init(configuration: ModelConfiguration) {
        routing = configuration.routing
        expertCount = configuration.expertCount
        topK = configuration.expertsPerToken
    }

    public init(routing: ModelConfiguration.Routing, expertCount: Int, topK: Int) {
        self.routing = routing
        self.expertCount = expertCount
        self.topK = topK
    }

    /// Chooses the top-k experts for one token from its `expertCount` gate logits.
    /// Ties go to the lower expert index. Choices come in descending score order.
    public func route(logits: UnsafeBufferPointer<Float>) -> [ExpertChoice] {
        precondition(logits.count == expertCount, "router logits must have one entry per expert")
        var scores = [Float](repeating: 0, count: expertCount)
        switch routing.scoring {
        case .softmax:
            Router.softmax(logits, into: &scores)
        }
        let chosen = Router.topK(scores, k: topK)
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
