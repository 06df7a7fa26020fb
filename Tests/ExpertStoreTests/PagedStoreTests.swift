import Foundation
import SwiftMoE
import Synchronization
import TestSupport
import XCTest

final class PagedStoreTests: XCTestCase {
    /// A transformer whose experts come from a pool that holds only one layer's active experts.
    func tinyPoolModel(_ path: String, policy: CachePolicyKind = .lru) throws -> (Transformer, PagedExpertStore) {
        let source = try ModelSource(path: path)
        let catalog = try ExpertCatalog(source: source)
        let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: source.configuration.expertsPerToken), policy: policy)
        return (try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 2)), store)
    }

    func convert(_ input: String, bits: String = "keep", compression: StoreWriter.CompressionMode = .auto) throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory()
        let out = dir.path("model.moe")
        _ = try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: bits), compression: compression))
        return (dir, out)
    }

    func testTinyPoolLogitsAreBitIdenticalToResidentForGGUFAndStore() throws {
        for name in ["qwen2moe", "mixtral", "olmoe"] {
            let gguf = Fixtures.path("\(name)/model-q8_0.gguf")
            let tokens = try Fixtures.manifest(name).sequences[2]
            let resident = try Model(path: gguf, options: ExecutorOptions(threads: 2))
            let expected = try resident.transformer.forward(tokens: tokens, cache: resident.transformer.makeCache())

            for policy in CachePolicyKind.allCases {
                let (paged, store) = try tinyPoolModel(gguf, policy: policy)
                let logits = try paged.forward(tokens: tokens, cache: paged.makeCache())
                XCTAssertTrue(logits == expected, "\(name) GGUF, \(policy): paged logits differ")
                let m = store.metrics
                XCTAssertGreaterThan(m.misses, 0)
                XCTAssertLessThanOrEqual(m.peakPoolBytes, store.pool.capacity)
            }

            let (dir, moe) = try convert(gguf)
            defer { _ = dir }
            let (paged, store) = try tinyPoolModel(moe)
            XCTAssertTrue(try paged.forward(tokens: tokens, cache: paged.makeCache()) == expected, "\(name) .moe: paged logits differ")
            XCTAssertTrue(store.metrics.directIO || !store.metrics.directIO)  // either path is valid; reported in metrics

            // Token by token through the tiny pool as well (decode path: all active experts pinned at once).
            let (stepModel, _) = try tinyPoolModel(moe)
            let cache = stepModel.makeCache()
            var stepped: [Float] = []
            for t in tokens { stepped += try stepModel.forward(tokens: [t], cache: cache) }
            XCTAssertTrue(stepped == expected, "\(name) .moe: token-by-token paged logits differ")
        }
    }

    func testHuggingFaceDirectoryPagesToo() throws {
        let dir = Fixtures.path("qwen3moe-dense/hf")
        let tokens = try Fixtures.manifest("qwen3moe-dense").sequences[1]
        let resident = try Model(path: dir, options: ExecutorOptions(threads: 2))
        let expected = try resident.logits(tokens: tokens)
        let (paged, _) = try tinyPoolModel(dir)
        let logits = try paged.forward(tokens: tokens, cache: paged.makeCache())
        XCTAssertTrue(logits == Array(expected.joined()))
    }

    func testCompressedStoreRoundTrips() throws {
        // BF16 experts compress behind the byte-plane shuffle; decoding must restore them exactly.
        let (dir, moe) = try convert(Fixtures.path("mixtral/hf-bf16"), compression: .size)
        defer { _ = dir }
        let store = try MoEStoreFile(path: moe)
        XCTAssertTrue(store.manifest.experts.allSatisfy { $0.compression == .lz4Shuffle2 })
        XCTAssertTrue(store.manifest.experts.allSatisfy { $0.storedLength < $0.decodedLength })
        let tokens = try Fixtures.manifest("mixtral").sequences[1]
        let expected = try Model(path: Fixtures.path("mixtral/hf-bf16"), options: ExecutorOptions(threads: 1)).logits(tokens: tokens)
        let (paged, _) = try tinyPoolModel(moe)
        XCTAssertTrue(try paged.forward(tokens: tokens, cache: paged.makeCache()) == Array(expected.joined()))
    }

    func testRequantizedStoreMatchesItsOwnQuantizer() throws {
        // --bits q8_0 from an F32 source: expert bytes equal quantizing the source experts ourselves.
        let source = Fixtures.path("qwen3moe/model-f32.gguf")
        let (dir, moe) = try convert(source, bits: "q8_0")
        defer { _ = dir }
        let store = try MoEStoreFile(path: moe)
        let model = try ModelSource(path: source)
        let record = try XCTUnwrap(store.record(layer: 1, expert: 5))
        XCTAssertEqual(record.tensors.map(\.type), ["q8_0", "q8_0", "q8_0"])
        let gate = try XCTUnwrap(try model.weight(.expertGate(1, 5))).toFloats()
        var expected = [UInt8](repeating: 0, count: GGMLType.q8_0.traits.byteCount(elements: gate.count)!)
        try expected.withUnsafeMutableBytes { try GGMLType.q8_0.quantize(gate, into: $0.baseAddress!, count: gate.count) }
        store.file.withBytes { bytes in
            let stored = Array(bytes[(record.offset + record.tensors[0].offset)..<(record.offset + record.tensors[0].offset + record.tensors[0].length)])
            XCTAssertEqual(stored, expected)
        }
    }

    func testConcurrentAcquireReleaseNeverExceedsCapacity() throws {
        let path = Fixtures.path("olmoe/model-q8_0.gguf")
        let source = try ModelSource(path: path)
        let catalog = try ExpertCatalog(source: source)
        let c = source.configuration
        let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: 4), policy: .lru)
        let expectedBytes: [ExpertKey: [UInt8]] = try Dictionary(uniqueKeysWithValues: (0..<c.layerCount).flatMap { l in
            try (0..<c.expertCount).map { e in (ExpertKey(layer: l, expert: e), Array(try source.weight(.expertDown(l, e))!.data)) }
        })
        let failures = FailureLog()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var state = UInt64(worker + 1)
            for _ in 0..<300 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let key = ExpertKey(layer: Int(state >> 40) % c.layerCount, expert: Int(state >> 20) % c.expertCount)
                do {
                    try store.withExpert(layer: key.layer, expert: key.expert) { w in
                        if Array(w.down.data) != expectedBytes[key] { failures.add("wrong bytes for \(key)") }
                        if store.metrics.peakPoolBytes > store.pool.capacity { failures.add("pool over capacity") }
                    }
                } catch ExpertStoreError.poolTooSmall {
                    // Four threads may pin four experts at once; the pool holds exactly four: never an error.
                    failures.add("pool too small")
                } catch {
                    failures.add("\(error)")
                }
            }
        }
        XCTAssertEqual(failures.messages, [])
        XCTAssertLessThanOrEqual(store.metrics.peakPoolBytes, store.pool.capacity)
        store.evictAll()
        XCTAssertEqual(store.pool.usedBytes, 0, "every byte returned")
        XCTAssertEqual(store.pool.largestFreeBlock, store.pool.capacity)
        XCTAssertTrue(store.pool.checkInvariants())
    }

    func testPoolThatCannotHoldActiveExpertsIsAClearError() throws {
        let source = try ModelSource(path: Fixtures.path("mixtral/model-q8_0.gguf"))
        let catalog = try ExpertCatalog(source: source)
        let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: 1), policy: .lru)
        let transformer = try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 1))
        XCTAssertThrowsError(try transformer.forward(tokens: [1], cache: transformer.makeCache())) { error in
            guard case ExpertStoreError.poolTooSmall = error else { return XCTFail("\(error)") }
        }
    }

    func testBudgetTooSmallStatesTheMinimum() throws {
        XCTAssertThrowsError(try Model(path: Fixtures.path("mixtral/model-q8_0.gguf"), memory: .init(budget: 1 << 20))) { error in
            guard case let ExpertStoreError.budgetTooSmall(budget, minimum, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(budget, 1 << 20)
            XCTAssertGreaterThan(minimum, budget)
            XCTAssertTrue(detail.contains("dense weights"))
            XCTAssertTrue("\(error)".contains("at least"))
        }
    }

    // MARK: - Damage

    func testFlippedByteInARecordNamesLayerExpertAndOffset() throws {
        let (dir, moe) = try convert(Fixtures.path("qwen2moe/model-q8_0.gguf"))
        defer { _ = dir }
        let record = try XCTUnwrap(MoEStoreFile(path: moe).record(layer: 1, expert: 2))
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: moe))
        try handle.seek(toOffset: UInt64(record.offset + 100))
        let byte = try XCTUnwrap(handle.readData(ofLength: 1).first)
        try handle.seek(toOffset: UInt64(record.offset + 100))
        try handle.write(contentsOf: Data([byte ^ 0x40]))
        try handle.close()

        let source = try ModelSource(path: moe)  // the manifest is intact: opening works
        let store = try PagedExpertStore(source: source, capacity: 1 << 20)
        XCTAssertThrowsError(try store.withExpert(layer: 1, expert: 2) { _ in }) { error in
            guard case let ExpertStoreError.checksumMismatch(path, layer, expert, offset, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual([layer, expert, offset], [1, 2, record.offset])
            XCTAssertEqual(path, moe)
            XCTAssertTrue("\(error)".contains("layer 1"))
        }
        // Other experts still load, and the failed load returned its pool bytes.
        XCTAssertNoThrow(try store.withExpert(layer: 1, expert: 3) { _ in })
        store.evictAll()
        XCTAssertEqual(store.pool.usedBytes, 0)
    }

    func testTruncatedAndDamagedStoresAreErrors() throws {
        let (dir, moe) = try convert(Fixtures.path("qwen2moe/model-q8_0.gguf"))
        defer { _ = dir }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: moe))
        let damaged = dir.path("damaged.moe")
        for (label, data) in [("truncated", bytes.prefix(bytes.count - 5000)), ("empty", Data()), ("header only", bytes.prefix(4096))] {
            try data.write(to: URL(fileURLWithPath: damaged))
            XCTAssertThrowsError(try ModelSource(path: damaged), label) { XCTAssertTrue($0 is ModelFormatError, "\(label): \($0)") }
        }
        var flipped = bytes
        let manifestOffset = Int(try MoEStoreFile(path: moe).header.manifestOffset)
        flipped[manifestOffset + 10] ^= 1
        try flipped.write(to: URL(fileURLWithPath: damaged))
        XCTAssertThrowsError(try ModelSource(path: damaged)) { XCTAssertTrue("\($0)".contains("manifest"), "\($0)") }
        var header = bytes
        header[20] ^= 1
        try header.write(to: URL(fileURLWithPath: damaged))
        XCTAssertThrowsError(try ModelSource(path: damaged)) { XCTAssertTrue("\($0)".contains("header checksum"), "\($0)") }
    }
}

/// Failures collected from worker threads (the first 20).
final class FailureLog: Sendable {
    private let log = Mutex<[String]>([])
    var messages: [String] { log.withLock { $0 } }
    func add(_ m: String) {
        log.withLock { if $0.count < 20 { $0.append(m) } }
    }
}
