import Foundation
import SwiftMoE
import TestSupport
import XCTest

final class BitPlannerTests: XCTestCase {
    /// Synthetic experts: realistic byte sizes per type (4 KiB records), losses that fall with
    /// bits, scaled per expert by a heavy-tailed "frequency" and a per-expert sensitivity.
    func syntheticExperts(_ count: Int, seed: UInt64, types: [(String, Int, Double)] = [
        ("q2_K", 16, 8), ("q3_K", 21, 3.5), ("q4_K", 27, 1.2), ("q5_K", 33, 0.5), ("q6_K", 39, 0.2), ("q8_0", 51, 0.05),
    ]) -> [BitPlanner.Expert] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let frequency = pow(rng.unit(), 3)
            let sensitivity = 0.2 + 2 * rng.unit()
            let options = types.map { name, pages, loss in
                BitPlanner.Option(type: name, bytes: pages * 4096, loss: frequency * sensitivity * loss * (0.8 + 0.4 * rng.unit()))
            }
            return BitPlanner.Expert(key: ExpertKey(layer: i / 16, expert: i % 16), options: options)
        }
    }

    func total(_ experts: [BitPlanner.Expert], _ result: BitPlanner.Result) -> (bytes: Int, loss: Double) {
        var bytes = 0, loss = 0.0
        for e in experts {
            let o = try? XCTUnwrap(e.options.first { $0.type == result.types[e.key] })
            bytes += o?.bytes ?? 0
            loss += o?.loss ?? 0
        }
        return (bytes, loss)
    }

    func testEveryMethodMeetsEveryBudget() throws {
        let experts = syntheticExperts(96, seed: 7)
        let range = BitPlanner.range(experts)
        XCTAssertEqual(range.lowerBound, 96 * 16 * 4096)
        XCTAssertEqual(range.upperBound, 96 * 51 * 4096)
        for method in BitPlanner.Method.allCases {
            for step in 0...40 {
                // Budgets on and off the 4 KiB grid, from the minimum to beyond the maximum.
                let budget = range.lowerBound + (range.upperBound - range.lowerBound) * step / 38 + (step % 3) * 1234
                let result = try BitPlanner.plan(experts, budget: budget, method: method)
                let counted = total(experts, result)
                XCTAssertEqual(result.types.count, experts.count, "\(method): every expert gets a type")
                XCTAssertEqual(counted.bytes, result.bytes, "\(method): reported bytes are the sum of the chosen options")
                XCTAssertLessThanOrEqual(result.bytes, budget, "\(method) at budget \(budget)")
                XCTAssertEqual(counted.loss, result.predictedLoss, accuracy: 1e-9)
            }
            XCTAssertThrowsError(try BitPlanner.plan(experts, budget: range.lowerBound - 1, method: method)) { error in
                XCTAssertEqual(error as? BitPlanner.PlanError, .budgetTooSmall(budget: range.lowerBound - 1, minimum: range.lowerBound))
            }
        }
        // With room for everything, every expert takes its least lossy option.
        let roomy = try BitPlanner.plan(experts, budget: range.upperBound, method: .knapsack)
        for e in experts { XCTAssertEqual(roomy.types[e.key], e.options.min { $0.loss < $1.loss }?.type) }
    }

    /// The knapsack against exhaustive search on instances small enough to enumerate: never
    /// over budget, and never worse than the optimum by more than the largest single step of
    /// one expert (the bound of the greedy on convex hulls).
    func testKnapsackIsNearTheExhaustiveOptimum() throws {
        var exactHits = 0, cases = 0
        for seed in 1...60 {
            let experts = syntheticExperts(6, seed: UInt64(seed), types: [("a", 2, 4), ("b", 3, 1.5), ("c", 5, 0.4), ("d", 8, 0.1)])
            let range = BitPlanner.range(experts)
            var rng = SplitMix64(seed: UInt64(seed) * 31)
            let budget = range.lowerBound + Int(rng.unit() * Double(range.upperBound - range.lowerBound))
            // Exhaustive: 4^6 plans.
            var best = Double.infinity
            for code in 0..<(1 << 12) {
                var bytes = 0, loss = 0.0
                for (i, e) in experts.enumerated() {
                    let o = e.options[(code >> (2 * i)) & 3]
                    bytes += o.bytes
                    loss += o.loss
                }
                if bytes <= budget { best = min(best, loss) }
            }
            let result = try BitPlanner.plan(experts, budget: budget, method: .knapsack)
            XCTAssertLessThanOrEqual(result.bytes, budget)
            let slack = experts.map { e in (e.options.map(\.loss).max() ?? 0) - (e.options.map(\.loss).min() ?? 0) }.max() ?? 0
            XCTAssertLessThanOrEqual(result.predictedLoss, best + slack + 1e-12, "seed \(seed)")
            XCTAssertGreaterThanOrEqual(result.predictedLoss, best - 1e-12, "seed \(seed): better than exhaustive search is impossible")
            if abs(result.predictedLoss - best) < 1e-12 { exactHits += 1 }
            cases += 1
        }
        XCTAssertGreaterThan(exactHits, cases / 2, "the greedy should find the exact optimum in most small cases (\(exactHits) of \(cases))")
    }

    /// EdgeMoE: the uniform types bracketing the budget; the experts at the lower one are the
    /// least sensitive at it, and there are just enough of them to fit.
    func testEdgeMoELowersTheLeastSensitiveExperts() throws {
        let experts = syntheticExperts(64, seed: 3)
        let q4 = 64 * 27 * 4096, q5 = 64 * 33 * 4096
        let budget = q4 + (q5 - q4) * 3 / 10
        let result = try BitPlanner.plan(experts, budget: budget, method: .edgeMoE)
        XCTAssertEqual(Set(result.types.values), ["q4_K", "q5_K"])
        let lowered = experts.filter { result.types[$0.key] == "q4_K" }
        // Lowering one expert saves 6 pages: just enough experts to fit.
        let needed = Int((Double(q5 - budget) / Double(6 * 4096)).rounded(.up))
        XCTAssertEqual(lowered.count, needed)
        let threshold = lowered.map { $0.options[2].loss }.max() ?? 0
        for e in experts where result.types[e.key] == "q5_K" {
            XCTAssertGreaterThanOrEqual(e.options[2].loss, threshold, "a more sensitive expert was lowered before \(e.key)")
        }
    }

    /// Where sensitivities differ, spending bytes where they save the most loss beats two widths.
    func testKnapsackPredictsLessLossThanEdgeMoEAtEqualBudget() throws {
        let experts = syntheticExperts(128, seed: 11)
        let range = BitPlanner.range(experts)
        for f in [0.1, 0.3, 0.5, 0.7] {
            let budget = range.lowerBound + Int(f * Double(range.upperBound - range.lowerBound))
            let knapsack = try BitPlanner.plan(experts, budget: budget, method: .knapsack)
            let edge = try BitPlanner.plan(experts, budget: budget, method: .edgeMoE)
            XCTAssertLessThan(knapsack.predictedLoss, edge.predictedLoss, "budget fraction \(f)")
        }
    }

    func testPlanFileRoundTrips() throws {
        let experts = syntheticExperts(32, seed: 5)
        let range = BitPlanner.range(experts)
        let result = try BitPlanner.plan(experts, budget: (range.lowerBound + range.upperBound) / 2, method: .knapsack)
        let dir = TemporaryDirectory()
        let path = dir.path("plan.json")
        try result.bitPlan().write(to: path)
        let loaded = try BitPlan.load(path: path)
        XCTAssertEqual(loaded, result.bitPlan())
        // Every expert resolves to the type the planner chose.
        var decoded: [ExpertKey: String] = [:]
        for e in experts { decoded[e.key] = loaded.default }
        for a in loaded.experts { decoded[ExpertKey(layer: a.layer, expert: a.expert)] = a.type }
        XCTAssertEqual(decoded, result.types)
        // Users edit plans by hand: a damaged one is a clear error.
        try Data("{\"format\": \"swiftmoe-bit-plan\", \"version\": 1, \"default\": 4}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try BitPlan.load(path: path)) { XCTAssertTrue("\($0)".contains("invalid bit plan")) }
    }

    /// Found by fuzzing (tools/fuzz, target bitplan): strings from the plan went into errors raw.
    /// They are shown escaped and cut, and a JSON error names the key path on one line.
    func testPlanErrorsShowFileTextOnOneLine() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("plan.json")
        let long = String(repeating: "x", count: 500)
        let cases: [(String, String)] = [
            (#"{"format": "swiftmoe-bit-pl\n", "version": 1, "default": "q4_K", "experts": []}"#, #"format swiftmoe-bit-pl\n version 1"#),
            (#"{"format": "swiftmoe-bit-plan", "version": 1, "default": 4, "experts": []}"#, "at default: "),
            (#"{"format": "swiftmoe-bit-plan", "version": 1, "default": "q4_K", "experts": [{"layer": 0, "expert": "a\u0001", "type": "q8_0"}]}"#, "at experts[0].expert: "),
        ]
        for (json, expected) in cases {
            try Data(json.utf8).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try BitPlan.load(path: path), json) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
        let plan = BitPlan(default: "q4\u{1}" + long)
        let configuration = try ModelSource(path: Fixtures.path("mixtral/model-q8_0.gguf")).configuration
        XCTAssertThrowsError(try plan.resolve(for: configuration)) { error in
            XCTAssertTrue("\(error)".contains(#"default type q4\u{01}xxx"#), "\(error)")
            XCTAssertTrue("\(error)".contains("more characters"), "\(error)")
        }
    }
}
