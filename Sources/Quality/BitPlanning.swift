import Conversion
import ExpertStore
import Foundation
import ModelFormats
import Router
import Runtime

/// `moe convert --target-size / --max-ppl-increase`: a bit plan from a sensitivity table,
/// sized against the exact store layout and, for a quality target, checked by running the
/// planned model on the calibration text.
public enum BitPlanning {
    public enum Target: Sendable, Equatable {
        /// Bytes of the whole `.moe` file.
        case storeSize(Int)
        /// Largest perplexity increase on the calibration text, as a fraction (0.02 = 2%),
        /// relative to the model as given.
        case perplexityIncrease(Double)
    }

    public enum PlanningError: Error, CustomStringConvertible, Equatable {
        case noSensitivity(path: String)
        case incomplete(path: String, measured: Int, needed: Int)
        case otherModel(path: String)
        case storeTooSmall(target: Int, minimum: Int)
        case noActivations(path: String)

        public var description: String {
            switch self {
            case let .noSensitivity(path):
                return "\(path) has no sensitivity table: run moe calibrate MODEL --text FILE (without --no-sensitivity) first"
            case let .incomplete(path, measured, needed):
                return "\(path): the sensitivity table holds \(measured) of \(needed) measurements; rerun the same moe calibrate command to finish it"
            case let .otherModel(path):
                return "\(path) was calibrated on another model (fingerprint differs); calibrate the model you convert"
            case let .noActivations(path):
                return "\(path) lacks per-expert activation counts (an older calibration); rerun the same moe calibrate command: it reuses the measurements"
            case let .storeTooSmall(target, minimum):
                return "--target-size \(target) bytes is below the smallest store these types allow (\(minimum) bytes, every expert at its smallest type)"
            }
        }
    }

    /// What planning decided and what it measured.
    public struct Outcome: Codable, Sendable {
        public var method: String
        public var target: String
        public var plan: BitPlan
        public var typeCounts: [String: Int]
        /// Bytes of all expert records, and of the whole store (an upper bound: compression
        /// only shrinks records).
        public var expertBytes: Int
        public var storeSize: Int
        /// Sum of the chosen types' measured KL divergences (nats/token; the additive prediction).
        public var predictedKLD: Double
        /// Measured on the calibration windows with every expert at its planned type
        /// (`--max-ppl-increase` only): perplexity increase as a fraction, and mean KLD.
        public var measuredPerplexityIncrease: Double?
        public var measuredKLD: Double?
        /// Plans evaluated on the calibration text.
        public var evaluations: Int
    }

    /// How an expert's loss at a type is predicted from the calibration.
    public enum LossModel: Sendable, Equatable {
        /// The KL divergence measured with the expert lowered alone (EdgeMoE's sensitivity).
        case measured
        /// Frequency-weighted sensitivity: the measured divergence divided by the expert's uses
        /// in the sensitivity windows gives its damage per use; experts with few uses there are
        /// shrunk toward their layer's average damage per use at that type (`priorUses`
        /// pseudo-uses); the loss is that damage times the expert's use rate over the whole
        /// routing pass (smoothed by half a use). Experts the short sensitivity windows barely
        /// saw are neither free nor ignored.
        case frequencyWeighted(priorUses: Double)

        public static let standard = LossModel.frequencyWeighted(priorUses: 32)
    }

    /// The planner's options for every expert: each measured type with its record bytes and
    /// predicted loss, plus `keep` (loss 0) when the source's own type is not a candidate.
    public static func options(source: ModelSource, calibration: CalibrationFile, path: String, loss model: LossModel = .measured) throws -> [BitPlanner.Expert] {
        guard let s = calibration.sensitivity else { throw PlanningError.noSensitivity(path: path) }
        let catalog = try ExpertCatalog(source: source)
        let c = source.configuration
        let measured = s.byKey
        let routing = calibration.routing
        func kld(_ l: Int, _ e: Int, _ t: String) throws -> Double {
            guard let m = measured[SensitivityTable.key(l, e, t)] else {
                throw PlanningError.incomplete(path: path, measured: s.measurements.count, needed: c.moeLayerCount * c.expertCount * s.settings.types.count)
            }
            return max(m.kld, 0)
        }
        // Damage per use, per (MoE layer index, type), averaged over the layer's experts.
        var layerDamage: [String: Double] = [:]
        if case .frequencyWeighted = model {
            guard let activations = s.activations else {
                throw PlanningError.noActivations(path: path)
            }
            for (i, l) in routing.layers.enumerated() {
                let uses = Double(activations[i].reduce(0, +))
                for t in s.settings.types {
                    let total = try (0..<c.expertCount).reduce(0.0) { $0 + (try kld(l, $1, t)) } * Double(s.scoredTokens)
                    layerDamage["\(i)/\(t)"] = uses > 0 ? total / uses : 0
                }
            }
        }
        // `keep` is offered to every expert (the planners need the same candidates everywhere)
        // when some expert's source type is not among the measured ones: a float source, or a
        // GGUF whose experts mix types (Q4_K_M's q6_K down projections).
        let candidates = Set(s.settings.types.map { $0.lowercased() })
        var offerKeep = false
        for l in routing.layers {
            for e in 0..<c.expertCount {
                guard let entry = catalog.entry(ExpertKey(layer: l, expert: e)) else { continue }
                if entry.tensors.contains(where: { !candidates.contains($0.type.description.lowercased()) }) { offerKeep = true }
            }
        }
        var experts: [BitPlanner.Expert] = []
        for (i, l) in routing.layers.enumerated() {
            for e in 0..<c.expertCount {
                let key = ExpertKey(layer: l, expert: e)
                guard let entry = catalog.entry(key) else { continue }
                let layout = entry.tensors.map { (type: $0.type, shape: $0.shape) }
                var options: [BitPlanner.Option] = []
                for name in s.settings.types {
                    var loss = try kld(l, e, name)
                    if case let .frequencyWeighted(prior) = model, let activations = s.activations {
                        let uses = Double(activations[i][e])
                        let perUse = (loss * Double(s.scoredTokens) + prior * (layerDamage["\(i)/\(name)"] ?? 0)) / (uses + prior)
                        let rate = (Double(routing.frequency[i][e]) + 0.5) / Double(max(routing.tokens, 1))
                        loss = perUse * rate
                    }
                    let type = BitPlan.storableType(name) ?? nil
                    options.append(.init(type: name, bytes: try StoreLayout.record(of: layout, at: type, expert: "\(key)").paddedLength, loss: loss))
                }
                if offerKeep {
                    options.append(.init(type: "keep", bytes: try StoreLayout.record(of: layout, at: nil, expert: "\(key)").paddedLength, loss: 0))
                }
                experts.append(.init(key: key, options: options))
            }
        }
        return experts
    }

    /// A plan whose store is at most `target` bytes (exactly as `moe convert` lays it out).
    public static func plan(source: ModelSource, experts: [BitPlanner.Expert], storeSize target: Int, method: BitPlanner.Method,
                            calibration: TransitionTable?) throws -> (result: BitPlanner.Result, storeSize: Int) {
        let range = BitPlanner.range(experts)
        // Everything but the expert records, measured on the smallest plan.
        let smallest = try BitPlanner.plan(experts, budget: range.lowerBound, method: .knapsack)
        let minimumStore = try Converter.storeSize(source: source, plan: smallest.bitPlan(), calibration: calibration)
        guard target >= minimumStore else { throw PlanningError.storeTooSmall(target: target, minimum: minimumStore) }
        var budget = target - (minimumStore - smallest.bytes)
        // The rest of the file (the manifest) varies by a few bytes with the plan: shrink the
        // budget by any overshoot until the store fits.
        for _ in 0..<8 {
            let result = try BitPlanner.plan(experts, budget: max(budget, range.lowerBound), method: method)
            let size = try Converter.storeSize(source: source, plan: result.bitPlan(), calibration: calibration)
            if size <= target { return (result, size) }
            budget -= size - target
        }
        return (smallest, minimumStore)
    }

    /// Plans for `target`. A perplexity target needs `probe` (the model as given, on the
    /// calibration windows): plans are searched by size (bisection) for the smallest whose
    /// measured perplexity increase is within the target.
    public static func plan(
        source: ModelSource, calibrationPath: String, calibration: CalibrationFile, target: Target, method: BitPlanner.Method,
        embedCalibration: Bool, probe: QualityProbe?, importance: [ExpertKey: ExpertImportance]? = nil, progress: ((String) -> Void)? = nil
    ) throws -> Outcome {
        guard let sensitivity = calibration.sensitivity else { throw PlanningError.noSensitivity(path: calibrationPath) }
        guard try source.expertFingerprint() == sensitivity.settings.modelFingerprint else { throw PlanningError.otherModel(path: calibrationPath) }
        let experts = try options(source: source, calibration: calibration, path: calibrationPath,
                                  loss: method == .knapsack ? .standard : .measured)
        let routing = embedCalibration ? calibration.routing : nil
        func outcome(_ r: BitPlanner.Result, size: Int, targetText: String, measured: QualityProbe.Drift?, evaluations: Int) -> Outcome {
            Outcome(method: method.rawValue, target: targetText, plan: r.bitPlan(), typeCounts: r.typeCounts, expertBytes: r.bytes, storeSize: size,
                    predictedKLD: r.predictedLoss, measuredPerplexityIncrease: measured.map { exp($0.deltaNLL) - 1 }, measuredKLD: measured?.kld,
                    evaluations: evaluations)
        }
        switch target {
        case let .storeSize(bytes):
            let (r, size) = try plan(source: source, experts: experts, storeSize: bytes, method: method, calibration: routing)
            return outcome(r, size: size, targetText: "store size \(bytes) bytes", measured: nil, evaluations: 0)
        case let .perplexityIncrease(limit):
            guard let probe else { throw PlanningError.noSensitivity(path: calibrationPath) }
            var cache: [String: RequantizedExpert] = [:]
            var evaluations = 0
            func evaluate(_ r: BitPlanner.Result) throws -> QualityProbe.Drift {
                var replacements: [ExpertKey: RequantizedExpert] = [:]
                var keep: [String: RequantizedExpert] = [:]
                for (key, name) in r.types where name != "keep" {
                    let id = SensitivityTable.key(key.layer, key.expert, name)
                    let type = BitPlan.storableType(name) ?? nil
                    let q = try cache[id] ?? probe.model.withExpertWeights(key) { try RequantizedExpert($0, to: type, importance: importance?[key]) }
                    replacements[key] = q
                    keep[id] = q
                }
                cache = keep  // only the current plan's copies stay in memory
                evaluations += 1
                return try probe.drift(replacements)
            }
            let range = BitPlanner.range(experts)
            var low = range.lowerBound, high = range.upperBound
            var best = try BitPlanner.plan(experts, budget: high, method: method)
            var bestDrift = try evaluate(best)
            progress?(String(format: "largest plan, experts %@: perplexity %+.2f%%", Units.formatBytes(best.bytes), 100 * (exp(bestDrift.deltaNLL) - 1)))
            if exp(bestDrift.deltaNLL) - 1 <= limit {
                // Bisection on the expert budget: the smallest plan within the limit.
                while high - low > max(ExpertRecordLayout.recordAlignment, (range.upperBound - range.lowerBound) / 200) {
                    let middle = low + (high - low) / 2
                    let r = try BitPlanner.plan(experts, budget: middle, method: method)
                    let d = try evaluate(r)
                    let increase = exp(d.deltaNLL) - 1
                    progress?(String(format: "experts %@: perplexity %+.2f%% %@", Units.formatBytes(r.bytes), 100 * increase, increase <= limit ? "(within)" : "(over)"))
                    if increase <= limit {
                        high = middle
                        best = r
                        bestDrift = d
                    } else {
                        low = middle
                    }
                }
            } else {
                progress?("no plan of these types is within the limit; using the largest")
            }
            let size = try Converter.storeSize(source: source, plan: best.bitPlan(), calibration: routing)
            return outcome(best, size: size, targetText: String(format: "perplexity increase ≤ %.2f%% on the calibration text", 100 * limit),
                           measured: bestDrift, evaluations: evaluations)
        }
    }
}
