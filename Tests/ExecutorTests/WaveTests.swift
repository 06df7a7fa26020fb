import Foundation
@testable import Executor
import SwiftMoE
import TestSupport
import XCTest

/// Prefill in waves (docs/design.md §5): which reads are queued ahead, the chunk rule, and logits
/// bit-identical to all-resident with a tight pool, read-ahead on and prompts cut into chunks.
final class WaveTests: XCTestCase {
    func testReadsAheadKeepTwoMissingExpertsInFlight() {
        // Experts 1, 3, 4, 6, 7 compute in that order; 3, 6 and 7 (positions 1, 3, 4) are missing.
        let wave = ExpertWave(layer: 0, experts: [1, 3, 4, 6, 7], missing: [1, 3, 4])
        // Before position 0 computes (a hit): the next two misses.
        XCTAssertEqual(wave.reads(before: 0, queued: 0), 0..<2)
        // Before position 1 (itself missing and already queued): the misses after it, up to two.
        XCTAssertEqual(wave.reads(before: 1, queued: 2), 2..<3)
        // Nothing left to queue.
        XCTAssertEqual(wave.reads(before: 2, queued: 3), 3..<3)
        XCTAssertTrue(wave.reads(before: 4, queued: 3).isEmpty)
        // A store that refused everything so far: offered again, never the one computing now.
        XCTAssertEqual(wave.reads(before: 3, queued: 0), 2..<3)
        XCTAssertEqual(ExpertWave(layer: 0, experts: [0, 1], missing: []).reads(before: 0, queued: 0), 0..<0)
    }

    func testChunkShrinksOnlyWhenThePoolWouldNotHoldAWave() {
        // 100 bytes of scratch per token, 10_000 available; a wave needs 3_000, the minimum pool 2_000.
        XCTAssertEqual(MemoryPlan.chunk(requested: 512, perToken: 100, available: 100_000, wave: 3_000, minimumPool: 2_000), 512)
        XCTAssertEqual(MemoryPlan.chunk(requested: 512, perToken: 100, available: 10_000, wave: 3_000, minimumPool: 2_000), 70)
        // No room for a wave even at one token: the largest chunk that leaves the minimum pool.
        XCTAssertEqual(MemoryPlan.chunk(requested: 512, perToken: 100, available: 2_150, wave: 3_000, minimumPool: 2_000), 1)
        XCTAssertEqual(MemoryPlan.chunk(requested: 512, perToken: 100, available: 2_500, wave: 3_000, minimumPool: 2_000), 5)
        XCTAssertEqual(MemoryPlan.chunk(requested: 4, perToken: 100, available: 100_000, wave: 3_000, minimumPool: 2_000), 4)
    }

    /// A pool of one layer's active experts plus room for the read-ahead, a loader thread, and
    /// prompts cut into chunks of 5: every expert read ahead where it fits, the logits of every
    /// position bit-identical to all experts resident, the pool never over its capacity.
    func testTightPoolWavesAreBitIdenticalToResident() throws {
        for name in ["qwen2moe", "mixtral", "olmoe"] {
            let gguf = Fixtures.path("\(name)/model-q8_0.gguf")
            let tokens = try Fixtures.manifest(name).sequences[2]
            let resident = try Model(path: gguf, options: ExecutorOptions(threads: 2))
            let expected = try resident.transformer.forward(tokens: tokens, cache: resident.transformer.makeCache())

            let source = try ModelSource(path: gguf)
            let catalog = try ExpertCatalog(source: source)
            let k = source.configuration.expertsPerToken
            let capacity = catalog.largestActiveSet(k: k) + catalog.largestActiveSet(k: ExecutorOptions.defaultReadAhead)
            let store = try PagedExpertStore(catalog: catalog, capacity: capacity, policy: .lru, loaderThreads: 1)
            defer { store.stopLoaders() }
            let transformer = try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 2, promptChunk: 5))
            let logits = try transformer.forward(tokens: tokens, cache: transformer.makeCache())
            XCTAssertTrue(logits == expected, "\(name): logits differ with waves and chunks of 5")
            let m = store.metrics
            XCTAssertGreaterThan(m.prefetchIssued, 0, "\(name): no read was queued ahead")
            XCTAssertGreaterThan(m.prefetchUseful, 0, "\(name): no read-ahead was used")
            XCTAssertLessThanOrEqual(m.peakPoolBytes, store.pool.capacity)
            store.withPool { XCTAssertTrue($0.checkInvariants()) }

            // The last position alone, as `.last` after chunks, is the same row.
            let last = try transformer.forward(tokens: tokens, cache: transformer.makeCache(), logits: .last)
            XCTAssertTrue(last == Array(expected.suffix(last.count)), "\(name): .last after chunks differs")
        }
    }
}
