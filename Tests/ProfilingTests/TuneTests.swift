import Foundation
import Executor
import ExpertStore
import ModelFormats
import Profiling
import Router
import Runtime
import Tracing
import Tuning
import TestSupport
import XCTest

final class TuneTests: XCTestCase {
    static let demo = ReplayAgreementTests.demo

    /// A budget whose pool holds only part of the experts, found from MemoryPlan's own fixed
    /// needs in this process.
    func budget(poolBytes: Int) throws -> Int {
        let source = try ModelSource(path: Self.demo, randomAccess: true)
        let catalog = try ExpertCatalog(source: source)
        let big = 1 << 30
        let plan = try MemoryPlan.make(budget: big, source: source, catalog: catalog, options: ExecutorOptions(threads: 2), maxPositions: 32, promptChunk: 512)
        let fixed = Double(big) * 0.97 - Double(plan.pool)
        return Int((Double(poolBytes) + fixed) / 0.97)
    }

    func testRecommendationRespectsTheBudgetAndRuns() throws {
        let tokens = try ReplayAgreementTests.textTokens(48)
        // Room for about 12 of the 64 experts (plus RSS growth while tuning, which only shrinks it).
        let budget = try budget(poolBytes: 12 * 208_896)
        var options = TuneOptions(budget: budget, executor: ExecutorOptions(threads: 2), memory: .init(maxContext: 32))
        options.prefetchKinds = [.none, .lookahead]
        options.window = 32
        options.verifyTokens = 16
        options.tolerance = 0
        let result = try Model.tune(path: Self.demo, text: tokens, source: "test", options: options)

        let plan = try XCTUnwrap(result.memoryPlan)
        let limit = try XCTUnwrap(result.budgetExperts["none"])
        XCTAssertEqual(limit, plan.pool / result.expertBytes)
        XCTAssertLessThan(limit, result.totalExperts, "the budget binds")
        let p = result.recommendation.point
        XCTAssertTrue(p.withinBudget)
        XCTAssertLessThanOrEqual(p.poolBytes, plan.pool, "never a pool bigger than the budget allows")
        XCTAssertLessThanOrEqual(p.experts, result.budgetExperts[p.prefetch] ?? 0)
        for q in result.points { XCTAssertEqual(q.withinBudget, q.experts <= (result.budgetExperts[q.prefetch] ?? -1), "\(q)") }
        // With no tolerance and more cache never hurting here, the pick is the fastest point the budget allows.
        XCTAssertEqual(p.tokensPerSecond, result.points.filter { $0.withinBudget && $0.policy != "belady" }.map(\.tokensPerSecond).max())
        XCTAssertTrue(result.points.contains { !$0.withinBudget && $0.tokensPerSecond > p.tokensPerSecond }, "faster points exist beyond the budget")
        // Belady's MIN bounds every policy without prefetching, at every size.
        for size in Set(result.points.map(\.experts)) {
            let at = result.points.filter { $0.experts == size && $0.prefetch == "none" }
            let bound = try XCTUnwrap(at.first { $0.policy == "belady" }).hitRate
            for q in at { XCTAssertLessThanOrEqual(q.hitRate, bound + 1e-12, "\(q.policy) at \(size)") }
        }
        // Sizes run from one layer's active experts to all resident.
        XCTAssertEqual(result.points.map(\.experts).min(), 2)
        XCTAssertEqual(result.points.map(\.experts).max(), 64)
        // The recommended configuration runs under the budget in a fresh process, with exactly
        // the recommended pool, and its peak RSS stays under the budget.
        let config = result.configuration
        XCTAssertEqual(config.memoryBytes, budget)
        let dir = TemporaryDirectory()
        try config.write(to: dir.path("c.json"))
        let bench = try Fixtures.runMoe(["bench", Self.demo, "--config", dir.path("c.json"), "--context", "32", "--prompt-tokens", "8",
                                               "--gen-tokens", "8", "--repetitions", "1", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let measured = try JSONDecoder().decode(BenchmarkResult.self, from: Data(bench.stdout.utf8))
        XCTAssertEqual(measured.expert_store?.poolCapacity, p.poolBytes)
        XCTAssertEqual(measured.memory_plan?.budget, budget)
        XCTAssertLessThanOrEqual(measured.peak_rss_bytes, budget)
        // The verification replayed its own run: without prefetching every request agrees.
        let v = try XCTUnwrap(result.verification)
        XCTAssertEqual(v.tokens, 16)
        if p.prefetch == "none" {
            XCTAssertEqual(v.disagreements, 0)
            XCTAssertEqual(v.projectedHitRate, v.measuredHitRate)
        }
        XCTAssertGreaterThan(v.measuredTokensPerSecond, 0)
        XCTAssertGreaterThan(v.projectedTokensPerSecond, 0)
    }

    func testBudgetBelowTheMinimumIsAClearError() throws {
        let tokens = try ReplayAgreementTests.textTokens(8)
        let options = TuneOptions(budget: 1_000_000, executor: ExecutorOptions(threads: 2))
        XCTAssertThrowsError(try Model.tune(path: Self.demo, text: tokens, source: "test", options: options)) { error in
            XCTAssertTrue("\(error)".contains("no pool size fits --memory 1000000 bytes"), "\(error)")
        }
    }

    func testRunConfigurationFileIsCheckedAndRoundTrips() throws {
        let dir = TemporaryDirectory()
        var config = RunConfiguration()
        config.memory = "200MB"
        config.expertCache = "8364KiB"
        config.cachePolicy = .edgemoe
        config.prefetch = PredictorKind.none
        config.threads = 2
        try config.write(to: dir.path("c.json"))
        XCTAssertEqual(try RunConfiguration.load(path: dir.path("c.json")), config)
        XCTAssertEqual(config.arguments, ["--memory", "200MB", "--expert-cache", "8364KiB", "--cache-policy", "edgemoe", "--prefetch", "none", "--threads", "2"])
        for (text, message) in [
            ("{\"format\": \"swiftmoe-run-config\", \"version\": 1, \"cache_polcy\": \"lru\"}", "unknown key \"cache_polcy\""),
            ("{\"format\": \"swiftmoe-run-config\", \"version\": 1, \"cache_policy\": \"random\"}", "cache_policy"),
            ("{\"format\": \"swiftmoe-run-config\", \"version\": 1, \"memory\": \"lots\"}", "memory \"lots\""),
            ("{\"format\": \"other\", \"version\": 1}", "expected \"swiftmoe-run-config\""),
            ("[1, 2]", "not a JSON object"),
        ] {
            try Data(text.utf8).write(to: dir.url.appendingPathComponent("bad.json"))
            XCTAssertThrowsError(try RunConfiguration.load(path: dir.path("bad.json"))) { e in XCTAssertTrue("\(e)".contains(message), "\(e)") }
        }
    }
}
