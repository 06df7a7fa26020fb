import Foundation
import SwiftMoE
import TestSupport
import XCTest

final class PrefetchTests: XCTestCase {
    func testPredictorsFollowHandMadeStatistics() throws {
        // Two MoE layers (0, 1), 4 experts: after expert 0, layer 1 picks 2 (3 times) or 3 (once).
        var table = TransitionTable(layers: [0, 1, 2], expertCount: 4)
        for _ in 0..<3 { table.record([[0], [2], [1]]) }
        table.record([[0], [3], [1]])
        table.record([[1], [1], [0]])
        let path = try ExpertPredictor(kind: .path, depth: 2, width: 2, table: table)
        XCTAssertEqual(path.predict(target: 1, currentLayer: 0, current: [0], previous: nil, lookahead: nil), [2, 3])
        XCTAssertEqual(path.predict(target: 1, currentLayer: 0, current: [1], previous: nil, lookahead: nil), [1, 0])
        // Two layers ahead uses the skip table: 0 at layer 0 led to 1 at layer 2 four times.
        XCTAssertEqual(path.predict(target: 2, currentLayer: 0, current: [0], previous: nil, lookahead: nil).first, 1)
        let lookahead = try ExpertPredictor(kind: .lookahead, depth: 1, width: 2, table: nil)
        XCTAssertEqual(lookahead.predict(target: 1, currentLayer: 0, current: [0], previous: nil, lookahead: [0.1, 0.5, 0.15, 0.25]), [1, 3])
        // Hybrid: lookahead weighs more, path breaks near-ties.
        let hybrid = try ExpertPredictor(kind: .hybrid, depth: 1, width: 1, table: table)
        XCTAssertEqual(hybrid.predict(target: 1, currentLayer: 0, current: [0], previous: nil, lookahead: [0.3, 0.0, 0.3, 0.4]), [2])
        XCTAssertThrowsError(try ExpertPredictor(kind: .path, depth: 1, width: 2, table: nil))

        var stats = PredictionStats()
        stats.record(layer: 1, predicted: [2, 3], actual: [2, 0])
        XCTAssertEqual(stats.precision(), 0.5)
        XCTAssertEqual(stats.recall(layer: 1), 0.5)
    }

    /// The table's JSON is written directly (no encoder value tree, which for a many-expert
    /// model took more memory than a --memory budget leaves); it must be byte for byte what
    /// JSONEncoder with sorted keys writes, and merged sections keep the keys sorted.
    func testTableJSONIsWhatJSONEncoderWritesAndMergesSections() throws {
        var table = TransitionTable(layers: [0, 2, 5], expertCount: 5)
        var state: UInt64 = 9
        for _ in 0..<40 {
            let route = (0..<3).map { _ -> [Int] in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return [Int(state >> 33) % 5, Int(state >> 45) % 5]
            }
            table.record(route)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        XCTAssertEqual(String(decoding: try table.json(), as: UTF8.self), String(decoding: try encoder.encode(table), as: UTF8.self))
        let merged = try table.json(merging: ["sensitivity": Data(#"{"a":1}"#.utf8), "activations": Data("[2.5]".utf8)])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: merged) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["activations", "expertCount", "format", "frequency", "layers", "next", "sensitivity", "skip", "tokens", "version"])
        XCTAssertEqual(try JSONDecoder().decode(TransitionTable.self, from: merged), table)
        let text = String(decoding: merged, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix(#"{"activations":[2.5],"expertCount":5,"#), text.prefix(60).description)
        XCTAssertTrue(text.contains(#""next":"#) && text.range(of: #""next":"#)!.lowerBound < text.range(of: #""sensitivity":{"a":1},"skip":"#)!.lowerBound)
    }

    func testCalibrationRoundTripsAndRejectsGarbage() throws {
        let dir = TemporaryDirectory()
        let model = try Model(path: Fixtures.path("olmoe/model-q8_0.gguf"), options: ExecutorOptions(threads: 1))
        let tokens = try Fixtures.manifest("olmoe").sequences[2]
        let table = try model.calibrate(tokens: tokens + tokens, window: 16)
        XCTAssertEqual(table.tokens, 2 * tokens.count)
        XCTAssertEqual(table.frequency.map { $0.reduce(0, +) }, [2 * tokens.count * 2, 2 * tokens.count * 2])  // top-2 at both layers
        try table.write(to: dir.path("c.json"))
        XCTAssertEqual(try TransitionTable.load(path: dir.path("c.json")), table)
        // Deterministic for a fixed input.
        XCTAssertEqual(try model.calibrate(tokens: tokens + tokens, window: 16), table)

        try Data("{\"format\": \"swiftmoe-calibration\"}".utf8).write(to: URL(fileURLWithPath: dir.path("bad.json")))
        XCTAssertThrowsError(try TransitionTable.load(path: dir.path("bad.json"))) { XCTAssertTrue("\($0)".contains("bad.json")) }
        var wrong = table
        wrong.next[0].removeLast()
        try wrong.write(to: dir.path("wrong.json"))
        XCTAssertThrowsError(try TransitionTable.load(path: dir.path("wrong.json")))
        // Embedded in a store, the table is found without a sidecar.
        _ = try Converter.convert(input: Fixtures.path("olmoe/model-q8_0.gguf"), output: dir.path("m.moe"), options: .init(calibration: table))
        let store = try Model(path: dir.path("m.moe"), memory: .init(prefetch: .path, expertCache: .fraction(0.5)))
        XCTAssertEqual(store.transformer.predictor?.table, table)
        XCTAssertThrowsError(try Converter.convert(input: Fixtures.path("mixtral/model-q8_0.gguf"), output: dir.path("x.moe"), options: .init(calibration: table)))
        // A table for another model is refused when loading the model.
        XCTAssertThrowsError(try Model(path: Fixtures.path("mixtral/model-q8_0.gguf"),
                                       memory: .init(budget: 200 << 20, prefetch: .path, calibration: dir.path("c.json")))) { error in
            XCTAssertTrue(error is PredictorError, "\(error)")
        }
    }

    /// Prefetching changes what is resident, never the logits; the pool never exceeds its capacity.
    func testOutputsAreBitIdenticalWithAnyPredictorAndPoolStaysWithinCapacity() throws {
        let path = Fixtures.path("qwen2moe/model-q8_0.gguf")
        let tokens = try Fixtures.manifest("qwen2moe").sequences[2]
        let resident = try Model(path: path, options: ExecutorOptions(threads: 2))
        let calibration = try resident.calibrate(tokens: tokens, window: 40)
        var expected: [Float] = []
        let residentCache = resident.transformer.makeCache()
        for t in tokens { expected += try resident.transformer.forward(tokens: [t], cache: residentCache) }

        for kind in PredictorKind.allCases {
            let source = try ModelSource(path: path)
            let catalog = try ExpertCatalog(source: source)
            let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: 2) + 3 * ExpertPool.alignment * 2,
                                             policy: .lru, loaderThreads: 2, maxPrefetchBytes: 1 << 20)
            let transformer = try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 2))
            transformer.predictor = try ExpertPredictor(kind: kind, depth: 2, width: 3, table: calibration)
            let cache = transformer.makeCache()
            var logits: [Float] = []
            for t in tokens {
                logits += try transformer.forward(tokens: [t], cache: cache)
                store.withPool { pool in
                    XCTAssertLessThanOrEqual(pool.usedBytes, pool.capacity)
                    XCTAssertTrue(pool.checkInvariants())
                }
            }
            XCTAssertTrue(logits == expected, "\(kind): logits differ with prefetching")
            let m = store.metrics
            XCTAssertLessThanOrEqual(m.peakPoolBytes, store.pool.capacity, "\(kind)")
            if kind != .none && kind != .auto {  // auto prefetches only where it measures that it pays
                XCTAssertGreaterThan(m.prefetchIssued, 0, "\(kind)")
                XCTAssertLessThanOrEqual(m.prefetchUseful + m.prefetchWasted, m.prefetchIssued, "\(kind)")
                XCTAssertGreaterThan(transformer.predictionStats.recall(), 0, "\(kind)")
            }
            store.stopLoaders()
        }
    }

    /// A scripted access sequence: what gets queued and what a prefetch may not evict.
    func testPrefetchOrderAndProtection() throws {
        let source = try ModelSource(path: Fixtures.path("mixtral/model-q8_0.gguf"))
        let catalog = try ExpertCatalog(source: source)
        let one = ExpertPool.rounded(catalog.entry(ExpertKey(layer: 0, expert: 0))!.decodedLength)
        let store = try PagedExpertStore(source: source, capacity: 3 * one, policy: .lru, loaderThreads: 1, maxPrefetchBytes: 2 * one)
        defer { store.stopLoaders() }
        let k = { (l: Int, e: Int) in ExpertKey(layer: l, expert: e) }
        try store.withExpert(layer: 0, expert: 0) { _ in }
        try store.withExpert(layer: 0, expert: 1) { _ in }
        // At layer 0, prefetching layer 1: room for one more expert, then layer-0 experts are protected.
        XCTAssertEqual(store.prefetch([k(1, 2), k(1, 3), k(1, 0)], currentLayer: 0), [k(1, 2)])
        // Already resident or queued experts are skipped; the cap (2 unused prefetches) holds.
        XCTAssertEqual(store.prefetch([k(1, 2)], currentLayer: 0), [])
        // At layer 1, layer-0 experts may go: the next guesses evict them, oldest first, up to the cap.
        XCTAssertEqual(store.prefetch([k(1, 3), k(1, 0)], currentLayer: 1), [k(1, 3)])
        try store.withExpert(layer: 1, expert: 2) { w in XCTAssertEqual(Array(w.gate.data), Array(try source.weight(.expertGate(1, 2))!.data)) }
        let m = store.metrics
        XCTAssertEqual(m.prefetchIssued, 2)
        XCTAssertEqual(m.prefetchUseful, 1)
        XCTAssertEqual(m.misses, 2)
        XCTAssertFalse(store.residentKeys.contains(k(0, 0)), "the oldest layer-0 expert made room")
    }
}
