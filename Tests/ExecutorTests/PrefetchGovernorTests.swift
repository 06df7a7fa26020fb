import Foundation
@testable import Executor
import SwiftMoE
import TestSupport
import XCTest

/// `--prefetch auto`'s decisions on made-up measurements (docs/design.md §5).
final class PrefetchGovernorTests: XCTestCase {
    typealias G = PrefetchGovernor

    func testOnOnlyWhenComputeOutlastsTheReadsOfLikelyMisses() {
        // Half a 1 MB expert missing per layer at 1 GB/s: 0.5 ms of reads.
        XCTAssertTrue(G.pays(layerSeconds: 2e-3, missesPerLayer: 0.5, expertBytes: 1_000_000, bandwidth: 1e9, currently: false))
        XCTAssertFalse(G.pays(layerSeconds: 0.1e-3, missesPerLayer: 0.5, expertBytes: 1_000_000, bandwidth: 1e9, currently: false))
        // Near a ratio of 1 the decision holds (hysteresis): 0.52 ms against 0.5 ms.
        XCTAssertFalse(G.pays(layerSeconds: 0.52e-3, missesPerLayer: 0.5, expertBytes: 1_000_000, bandwidth: 1e9, currently: false))
        XCTAssertTrue(G.pays(layerSeconds: 0.52e-3, missesPerLayer: 0.5, expertBytes: 1_000_000, bandwidth: 1e9, currently: true))
        XCTAssertFalse(G.pays(layerSeconds: 0.4e-3, missesPerLayer: 0.5, expertBytes: 1_000_000, bandwidth: 1e9, currently: true))
        // Nothing misses: nothing to hide, stay off however slow the layer.
        XCTAssertFalse(G.pays(layerSeconds: 1, missesPerLayer: 0.01, expertBytes: 1_000_000, bandwidth: 1e9, currently: false))
    }

    func testHeadroomIsWhatTheDiskReadsBesidesDemandReads() {
        XCTAssertEqual(G.headroom(layerSeconds: 2e-3, bandwidth: 1e9, demandBytes: 500_000), 1_500_000)
        XCTAssertEqual(G.headroom(layerSeconds: 1e-4, bandwidth: 1e9, demandBytes: 500_000), 0)
        XCTAssertEqual(G.capped([1, 2, 3, 4], size: { _ in 600_000 }, budget: 1_500_000), [1, 2])
        XCTAssertEqual(G.capped([1, 2], size: { _ in 600_000 }, budget: 0), [])
    }

    func testExtrasBeyondTopKOnlyWhereTheGateIsUncertain() {
        let confident: [Double] = [0.02, 0.5, 0.03, 0.4, 0.05]   // ranks 1, 3, 4, 2, 0
        let ranked = [1, 3, 4, 2, 0]
        XCTAssertEqual(G.uncertain(ranked, score: { confident[$0] }, k: 2, width: 4), [1, 3])
        let unsure: [Double] = [0.05, 0.35, 0.1, 0.3, 0.2]      // ranks 1, 3, 4, 2, 0; 0.2 ≥ 0.5 × 0.3
        XCTAssertEqual(G.uncertain([1, 3, 4, 2, 0], score: { unsure[$0] }, k: 2, width: 4), [1, 3, 4])
        XCTAssertEqual(G.uncertain([1, 3, 4, 2, 0], score: { unsure[$0] }, k: 2, width: 2), [1, 3])
        XCTAssertEqual(G.uncertain([1], score: { _ in 1 }, k: 2, width: 3), [1])
    }

    /// A scripted decode: layers 0 and 1 are MoE; times and store counters as measured.
    func testObserveTurnsOnAndOffWithTheMeasurements() {
        var g = G()
        func sample(_ bytes: Int, _ seconds: Double, _ misses: Int) -> G.IOSample {
            G.IOSample(bytesRead: bytes, readSeconds: seconds, wouldMiss: misses, expertBytes: 1_000_000)
        }
        // First layer of a step: nothing to compare with yet.
        XCTAssertFalse(g.observe(layer: 0, previous: nil, time: 1_000_000, sample: sample(0, 0, 0)))
        // Layer 1, 2 ms later; one expert (1 MB) missed and was read in 1 ms (1 GB/s): 2 ms ≥ 1.1 ms.
        XCTAssertTrue(g.observe(layer: 1, previous: 0, time: 3_000_000, sample: sample(1_000_000, 1e-3, 1)))
        XCTAssertEqual(g.layerSeconds ?? 0, 2e-3, accuracy: 1e-12)
        XCTAssertEqual(g.bandwidth ?? 0, 1e9, accuracy: 1)
        XCTAssertEqual(g.headroomBytes, 1_000_000)
        // A new step starts at layer 0: the interval since layer 1 is not a layer's.
        XCTAssertTrue(g.observe(layer: 0, previous: nil, time: 50_000_000, sample: sample(1_000_000, 1e-3, 1)))
        XCTAssertEqual(g.layerSeconds ?? 0, 2e-3, accuracy: 1e-12)
        // Layers turn fast (0.1 ms) while every one misses three experts: off.
        var time: UInt64 = 50_000_000, bytes = 1_000_000, seconds = 1e-3, misses = 1
        var on = true
        for i in 0..<40 {
            time += 100_000
            bytes += 3_000_000
            seconds += 3e-3
            misses += 3
            on = g.observe(layer: (i + 1) % 2, previous: i % 2, time: time, sample: sample(bytes, seconds, misses))
        }
        XCTAssertFalse(on)
        XCTAssertEqual(g.headroomBytes, 0)
    }

    func testAutoGuessesWithLookaheadOrHybrid() throws {
        XCTAssertEqual(try ExpertPredictor(kind: .auto, depth: 1, width: 3, table: nil).guessing, .lookahead)
        var table = TransitionTable(layers: [0, 1], expertCount: 4)
        table.record([[0], [2]])
        XCTAssertEqual(try ExpertPredictor(kind: .auto, depth: 1, width: 3, table: table).guessing, .hybrid)
        XCTAssertEqual(try ExpertPredictor(kind: .path, depth: 1, width: 3, table: table).guessing, .path)
        let ranked = try ExpertPredictor(kind: .lookahead, depth: 1, width: 2, table: nil)
            .ranked(target: 1, currentLayer: 0, current: [0], previous: nil, lookahead: [0.1, 0.5, 0.15, 0.25])
        XCTAssertEqual(ranked.experts, [1, 3])
        XCTAssertEqual(ranked.scores.count, 4)
    }
}
