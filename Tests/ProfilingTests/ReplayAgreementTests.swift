import Foundation
import Executor
import ExpertStore
import ModelFormats
import Profiling
import Router
import Runtime
import Tokenizer
import Tracing
import Tuning
import TestSupport
import XCTest

/// The replay simulator against the real paged store: two independent mechanisms on the same
/// access sequence must agree on every hit and miss for deterministic policies without prefetch.
final class ReplayAgreementTests: XCTestCase {
    static let demo = Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path

    static func textTokens(_ n: Int, skip: Int = 0) throws -> [Int] {
        let text = try String(contentsOfFile: Fixtures.packageRoot.appendingPathComponent("Models/demo/validation.txt").path, encoding: .utf8)
        let tokens = try Tokenizer(path: demo).encode(String(text.prefix(3_000)))
        return Array(tokens.dropFirst(skip).prefix(n))
    }

    /// Opens the demo model with a pool of exactly `experts` experts and records `workload`.
    func record(experts: Int, policy: CachePolicyKind, workload: TraceWorkload) throws -> (Trace, ExpertStoreMetrics, Int) {
        let probe = try ExpertCatalog(source: try ModelSource(path: Self.demo))
        let size = ExpertPool.rounded(try XCTUnwrap(probe.entry(ExpertKey(layer: 0, expert: 0))).decodedLength)
        // No read-ahead in prefill waves: the replay models demand paging only.
        let model = try Model(path: Self.demo, options: ExecutorOptions(threads: 2, readAhead: 0),
                              memory: .init(cachePolicy: policy, expertCache: .bytes(experts * size)))
        let store = try XCTUnwrap(model.pagedExperts)
        XCTAssertEqual(store.pool.capacity / size, experts, "the pool holds exactly the experts asked for")
        let trace = try model.recordTrace(workload, source: "test")
        return (trace, store.metrics, size)
    }

    func testReplayMatchesPagedStoreHitForHit() throws {
        let tokens = try Self.textTokens(24)
        // Decode (a layer's two experts pinned together) and prefill (one expert at a time).
        let workloads: [(String, TraceWorkload)] = [
            ("decode", .text(tokens: tokens, mode: .decode, window: 12)),
            ("prefill", .text(tokens: tokens, mode: .prefill, window: 6)),
        ]
        var compared = 0
        for (name, workload) in workloads {
            // 2 = one layer's top-2 (pinning decides the victim); 6 and 23 of the 64 experts.
            for experts in [2, 6, 23] {
                for policy in CachePolicyKind.allCases {
                    let (trace, metrics, _) = try record(experts: experts, policy: policy, workload: workload)
                    let w = TuningWorkload(trace: trace)
                    let real = w.recorded.map { $0 ?? false }
                    XCTAssertEqual(real.count, metrics.hits + metrics.misses, "the trace holds every request the store served")
                    XCTAssertEqual(real.filter { $0 }.count, metrics.hits)
                    let replay = CacheSimulator.replay(w.sequence, capacity: experts, policy: policy.make(layerCount: trace.header.layerCount))
                    XCTAssertEqual(replay.result.outcomes, real, "\(name), \(experts) experts, \(policy): replay and store disagree")
                    XCTAssertEqual(replay.result.evictions.count, trace.evictions.count, "\(name), \(experts), \(policy): evictions")
                    XCTAssertEqual(replay.result.evictions, trace.evictions.map(\.key), "\(name), \(experts), \(policy): eviction order")
                    compared += real.count
                    if policy == .lru {
                        // A third mechanism: LRU hits exactly the requests whose reuse (stack) distance is
                        // below the capacity. Pinning never matters to LRU here (the pinned expert is the
                        // most recent), so the report's reuse distances predict the run's hits too.
                        let distances = TraceAnalysis(trace).reuseDistances
                        XCTAssertEqual(distances.map { ($0 ?? Int.max) < experts }, real, "\(name), \(experts) experts: stack distances")
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, 600)
    }

    /// Without pinning the simulator picks victims the store may not evict: the old replay
    /// (every request its own batch) must differ from the store somewhere at the smallest pool,
    /// which shows the test above can fail.
    func testIgnoringPinsDisagreesAtTheSmallestPool() throws {
        let tokens = try Self.textTokens(40)
        var differed = false
        for policy in [CachePolicyKind.lfu, .fifo] {
            let (trace, _, _) = try record(experts: 2, policy: policy, workload: .text(tokens: tokens, mode: .decode, window: 40))
            let w = TuningWorkload(trace: trace)
            let unpinned = CacheSimulator.replay(AccessSequence(keys: w.sequence.keys), capacity: 2, policy: policy.make(layerCount: 4))
            if unpinned.result.outcomes != w.recorded.map({ $0 ?? false }) { differed = true }
        }
        XCTAssertTrue(differed)
    }
}
