import Foundation
import ModelFormats

/// Picks a type for every expert so the experts fit a byte budget with the least predicted
/// quality loss. Pure: it sees only each expert's options (bytes, predicted loss); the
/// numbers come from `moe calibrate` (loss) and ``StoreLayout`` (bytes).
///
/// Two methods (docs/quality.md compares them):
/// - ``Method/edgeMoE``: EdgeMoE's expert-wise bit-width adaptation. Two widths, the uniform
///   types whose stores bracket the budget; experts ranked by their loss at the lower width;
///   the K least sensitive go low, the rest stay high; K grows until the experts fit.
/// - ``Method/knapsack``: a multiple-choice knapsack over every type. The loss of an expert at
///   a type is measured end to end on the calibration text (so it already weighs how often the
///   expert fires by how much each use hurts); each expert's options are reduced to the lower
///   convex hull of (bytes, loss), and upgrades are bought greedily by loss saved per byte
///   while they fit. This is the Lagrangian optimum at the budget, up to one partial step.
public enum BitPlanner {
    public enum Method: String, CaseIterable, Codable, Sendable {
        case edgeMoE = "edgemoe"
        case knapsack
    }

    /// One way to store one expert.
    public struct Option: Sendable, Equatable {
        /// A bit-plan type name ("q4_K", "keep", ...).
        public var type: String
        /// Bytes the expert's record takes at this type.
        public var bytes: Int
        /// Predicted quality loss (e.g. mean KL divergence added on the calibration text).
        public var loss: Double
        public init(type: String, bytes: Int, loss: Double) {
            self.type = type
            self.bytes = bytes
            self.loss = loss
        }
    }

    public struct Expert: Sendable, Equatable {
        public var key: ExpertKey
        /// The same type names for every expert (any order).
        public var options: [Option]
        public init(key: ExpertKey, options: [Option]) {
            self.key = key
            self.options = options
        }
    }

    public struct Result: Sendable, Equatable {
        /// Chosen type of every expert.
        public var types: [ExpertKey: String]
        /// Bytes of all expert records.
        public var bytes: Int
        /// Sum of the chosen options' losses (the additive prediction).
        public var predictedLoss: Double

        /// The plan as a bit-plan file: the most common type as default, the rest listed.
        public func bitPlan() -> BitPlan {
            var counts: [String: Int] = [:]
            for t in types.values { counts[t, default: 0] += 1 }
            let common = counts.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key ?? "keep"
            let listed = types.filter { $0.value != common }.sorted { ($0.key.layer, $0.key.expert) < ($1.key.layer, $1.key.expert) }
            return BitPlan(default: common, experts: listed.map { BitPlan.Assignment(layer: $0.key.layer, expert: $0.key.expert, type: $0.value) })
        }

        /// Experts per type.
        public var typeCounts: [String: Int] {
            var counts: [String: Int] = [:]
            for t in types.values { counts[t, default: 0] += 1 }
            return counts
        }
    }

    public enum PlanError: Error, CustomStringConvertible, Equatable {
        case budgetTooSmall(budget: Int, minimum: Int)
        case noOptions(ExpertKey)
        case mismatchedOptions(ExpertKey)

        public var description: String {
            switch self {
            case let .budgetTooSmall(budget, minimum):
                return "the experts cannot fit in \(budget) bytes: the smallest plan (every expert at its smallest type) needs \(minimum)"
            case let .noOptions(key):
                return "expert \(key.expert) of layer \(key.layer) has no type to choose from"
            case let .mismatchedOptions(key):
                return "expert \(key.expert) of layer \(key.layer) has other types than the first expert; every expert needs the same candidates"
            }
        }
    }

    /// Bytes of the smallest and the largest plan.
    public static func range(_ experts: [Expert]) -> ClosedRange<Int> {
        let low = experts.reduce(0) { $0 + ($1.options.map(\.bytes).min() ?? 0) }
        let high = experts.reduce(0) { $0 + ($1.options.map(\.bytes).max() ?? 0) }
        return low...max(low, high)
    }

    /// A plan whose experts take at most `budget` bytes; throws if even the smallest does not fit.
    public static func plan(_ experts: [Expert], budget: Int, method: Method) throws -> Result {
        for e in experts where e.options.isEmpty { throw PlanError.noOptions(e.key) }
        let minimum = range(experts).lowerBound
        guard budget >= minimum else { throw PlanError.budgetTooSmall(budget: budget, minimum: minimum) }
        switch method {
        case .edgeMoE: return try edgeMoE(experts, budget: budget)
        case .knapsack: return knapsack(experts, budget: budget)
        }
    }

    static func result(_ experts: [Expert], _ choice: [Int]) -> Result {
        var types: [ExpertKey: String] = [:]
        var bytes = 0
        var loss = 0.0
        for (e, c) in zip(experts, choice) {
            let o = e.options[c]
            types[e.key] = o.type
            bytes += o.bytes
            loss += o.loss
        }
        return Result(types: types, bytes: bytes, predictedLoss: loss)
    }

    // MARK: EdgeMoE

    /// The type ladder: type names ordered by the bytes of a store that uses them everywhere.
    static func ladder(_ experts: [Expert]) throws -> [String] {
        guard let first = experts.first else { return [] }
        let names = Set(first.options.map(\.type))
        for e in experts where Set(e.options.map(\.type)) != names { throw PlanError.mismatchedOptions(e.key) }
        func total(_ name: String) -> Int { experts.reduce(0) { $0 + ($1.options.first { $0.type == name }?.bytes ?? 0) } }
        func loss(_ name: String) -> Double { experts.reduce(0) { $0 + ($1.options.first { $0.type == name }?.loss ?? 0) } }
        // Equal bytes (records are padded to 4 KiB): the less lossy type counts as the higher.
        return names.sorted { (total($0), -loss($0), $0) < (total($1), -loss($1), $1) }
    }

    static func edgeMoE(_ experts: [Expert], budget: Int) throws -> Result {
        let types = try ladder(experts)
        guard !types.isEmpty else { return result(experts, []) }
        func index(_ e: Expert, _ name: String) -> Int { e.options.firstIndex { $0.type == name } ?? 0 }
        func uniform(_ name: String) -> [Int] { experts.map { index($0, name) } }
        func bytes(_ choice: [Int]) -> Int { zip(experts, choice).reduce(0) { $0 + $1.0.options[$1.1].bytes } }
        // The highest type whose uniform plan fits is the low width; the next one up is high.
        guard let lowPosition = types.lastIndex(where: { bytes(uniform($0)) <= budget }) else {
            // Uniform plans never fit, but mixed ones might (per-expert sizes differ): fall back
            // to the smallest option of each expert, which plan() checked fits.
            return result(experts, experts.map { e in e.options.indices.min { e.options[$0].bytes < e.options[$1].bytes } ?? 0 })
        }
        let low = types[lowPosition]
        guard lowPosition + 1 < types.count else { return result(experts, uniform(low)) }
        let high = types[lowPosition + 1]
        var choice = uniform(high)
        var used = bytes(choice)
        // Least sensitive at the low width first; ties by position, for a deterministic plan.
        let order = experts.indices.sorted {
            let a = experts[$0].options[index(experts[$0], low)].loss, b = experts[$1].options[index(experts[$1], low)].loss
            return (a, experts[$0].key.layer, experts[$0].key.expert) < (b, experts[$1].key.layer, experts[$1].key.expert)
        }
        for i in order where used > budget {
            let lowIndex = index(experts[i], low)
            used += experts[i].options[lowIndex].bytes - experts[i].options[choice[i]].bytes
            choice[i] = lowIndex
        }
        return result(experts, choice)
    }

    // MARK: Knapsack

    /// The options of one expert on the lower convex hull of (bytes, loss), smallest first:
    /// dominated options (more bytes, no less loss) and those no budget would pick are dropped.
    static func hull(_ options: [Option]) -> [Int] {
        let sorted = options.indices.sorted { (options[$0].bytes, options[$0].loss, options[$0].type) < (options[$1].bytes, options[$1].loss, options[$1].type) }
        var points: [Int] = []
        for i in sorted {
            let o = options[i]
            // Same bytes as the last point: keep the lower loss (sorted, so the earlier one).
            if let last = points.last, options[last].bytes == o.bytes { continue }
            // Dominated: no better than something smaller.
            if let last = points.last, o.loss >= options[last].loss { continue }
            while points.count >= 2 {
                let a = options[points[points.count - 2]], b = options[points[points.count - 1]]
                // b is above the segment a→o: remove it (slope a→b not steeper than b→o).
                let slopeAB = (a.loss - b.loss) / Double(b.bytes - a.bytes)
                let slopeBO = (b.loss - o.loss) / Double(o.bytes - b.bytes)
                if slopeAB <= slopeBO { points.removeLast() } else { break }
            }
            points.append(i)
        }
        return points
    }

    static func knapsack(_ experts: [Expert], budget: Int) -> Result {
        let hulls = experts.map { hull($0.options) }
        var level = [Int](repeating: 0, count: experts.count)  // position on each hull
        var used = zip(experts, hulls).reduce(0) { $0 + $1.0.options[$1.1[0]].bytes }
        // Upgrades in order of loss saved per byte; an expert's next upgrade is always less
        // efficient than its previous one (convexity), so one pass over a sorted list of all
        // hull steps buys them in a valid order.
        struct Step { var expert: Int; var to: Int; var bytes: Int; var gain: Double }
        var steps: [Step] = []
        for (i, h) in hulls.enumerated() where h.count > 1 {
            for j in 1..<h.count {
                let a = experts[i].options[h[j - 1]], b = experts[i].options[h[j]]
                steps.append(Step(expert: i, to: j, bytes: b.bytes - a.bytes, gain: a.loss - b.loss))
            }
        }
        steps.sort {
            let l = $0.gain / Double($0.bytes), r = $1.gain / Double($1.bytes)
            if l != r { return l > r }
            return ($0.expert, $0.to) < ($1.expert, $1.to)
        }
        var blocked = Set<Int>()  // experts whose next step did not fit: later steps must wait for it
        for step in steps {
            guard !blocked.contains(step.expert), level[step.expert] == step.to - 1 else { continue }
            if used + step.bytes <= budget {
                used += step.bytes
                level[step.expert] = step.to
            } else {
                blocked.insert(step.expert)
            }
        }
        var choice = zip(hulls, level).map { $0[$1] }
        // Spend what is left on the best single moves off the hull that still fit.
        var improved = true
        while improved {
            improved = false
            var best: (expert: Int, option: Int, gain: Double)? = nil
            for (i, e) in experts.enumerated() {
                let current = e.options[choice[i]]
                for (j, o) in e.options.enumerated() where o.loss < current.loss && used - current.bytes + o.bytes <= budget {
                    let gain = current.loss - o.loss
                    if gain > (best?.gain ?? 0) { best = (i, j, gain) }
                }
            }
            if let best {
                used += experts[best.expert].options[best.option].bytes - experts[best.expert].options[choice[best.expert]].bytes
                choice[best.expert] = best.option
                improved = true
            }
        }
        return result(experts, choice)
    }
}
