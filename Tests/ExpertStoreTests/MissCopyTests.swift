import Foundation
@testable import ExpertStore
import SwiftMoE
import TestSupport
import XCTest

/// Miss copies (`moe convert --miss-copy`, `--on-miss lowbit`; docs/store-format.md, *Miss copies*).
///
/// The fixtures' rows are 64 wide, so their q2_K copies fall back to q4_0 (as `--bits q2_K`
/// does); the path is the same for every type, and the demo model's q2_K copies are measured in
/// docs/quality.md.
final class MissCopyTests: XCTestCase {
    let gguf = Fixtures.path("olmoe/model-q8_0.gguf")

    func convert(_ dir: TemporaryDirectory, missCopy: GGMLType? = .q2_K) throws -> String {
        let out = dir.path("copies.moe")
        _ = try Converter.convert(input: gguf, output: out, options: .init(compression: .none, missCopy: missCopy))
        return out
    }

    /// Every expert's copy is exactly what our quantizers make of the source expert at that type.
    func testStoreRoundTripsMissCopies() throws {
        let dir = TemporaryDirectory()
        let path = try convert(dir)
        let store = try MoEStoreFile(path: path)
        XCTAssertEqual(store.version, MoEStoreFile.missCopyVersion)
        XCTAssertEqual(store.manifest.version, Int(MoEStoreFile.missCopyVersion))
        XCTAssertEqual(store.manifest.missCopyType, "q2_K")
        let copies = try XCTUnwrap(try MissCopies(store: store, slots: 2))
        let source = try ModelSource(path: gguf)
        let c = source.configuration
        for l in c.moeLayers {
            for e in 0..<c.expertCount {
                let key = ExpertKey(layer: l, expert: e)
                let views = try source.expertTensors(layer: l, expert: e)
                let expected = try RequantizedExpert(ExpertWeights(gate: views[0], up: views[1], down: views[2]), to: .q2_K)
                let read = try copies.read(key, slot: e % 2)
                for (a, b) in zip([read.weights.gate, read.weights.up, read.weights.down], [expected.weights.gate, expected.weights.up, expected.weights.down]) {
                    XCTAssertEqual(a.type, b.type)
                    XCTAssertEqual(a.shape, b.shape)
                    XCTAssertEqual(Array(a.data), Array(b.data), "\(key) \(a.name)")
                }
                XCTAssertLessThan(read.bytes, try XCTUnwrap(store.record(layer: l, expert: e)?.paddedLength))
            }
        }
        // A store without copies stays version 1 (what readers before miss copies read), and the
        // committed demo store (version 1) still opens.
        let plain = dir.path("plain.moe")
        _ = try Converter.convert(input: gguf, output: plain, options: .init(compression: .none))
        XCTAssertEqual(try MoEStoreFile(path: plain).version, 1)
        XCTAssertNil(try MissCopies(store: MoEStoreFile(path: plain), slots: 2))
        XCTAssertEqual(try MoEStoreFile(path: Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path).version, 1)
    }

    /// A reader that does not know a version refuses it by number; copies in a store that claims
    /// version 1 are refused instead of ignored.
    func testVersionsAreCheckedBeforeTheCopiesAreTrusted() throws {
        let dir = TemporaryDirectory()
        let path = try convert(dir)
        let header = try MoEStoreFile(path: path).header
        for (version, expected) in [(UInt32(3), "version 3"), (UInt32(1), "miss copies in a version 1 store")] {
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            var patched = header
            patched.version = version
            bytes.replaceSubrange(0..<MoEStoreFile.headerSize, with: patched.encode())
            let damaged = dir.path("v\(version).moe")
            try bytes.write(to: URL(fileURLWithPath: damaged))
            XCTAssertThrowsError(try MoEStoreFile(path: damaged)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        // --on-miss lowbit on a store without copies says what to do.
        let plain = dir.path("plain.moe")
        _ = try Converter.convert(input: gguf, output: plain, options: .init(compression: .none))
        XCTAssertThrowsError(try Model(path: plain, memory: .init(expertCache: .fraction(0.5), onMiss: .lowbit))) {
            XCTAssertTrue("\($0)".contains("--miss-copy"), "\($0)")
        }
    }

    /// From a cold pool every expert of a decode step misses: with `--on-miss lowbit` the step
    /// computes exactly what the model computes with those experts replaced by their low-bit
    /// copies (an overlay of our quantizers' output on the resident model), counts the misses,
    /// and loads the exact experts for later tokens; `--on-miss exact` is the resident model.
    func testLowbitMissesUseTheSmallCopyAndLoadTheExactOne() throws {
        let dir = TemporaryDirectory()
        let path = try convert(dir)
        let token = try Fixtures.manifest("olmoe").sequences[2][0]
        let source = try ModelSource(path: gguf)
        let c = source.configuration

        let exact = try Transformer(source: source, options: ExecutorOptions(threads: 2))
        let expectedExact = try exact.forward(tokens: [token], cache: exact.makeCache())
        let overlay = ExpertOverlay(base: try ResidentExpertStore(source: source))
        var replaced: [ExpertKey: RequantizedExpert] = [:]
        for l in c.moeLayers {
            for e in 0..<c.expertCount {
                let v = try source.expertTensors(layer: l, expert: e)
                replaced[ExpertKey(layer: l, expert: e)] = try RequantizedExpert(ExpertWeights(gate: v[0], up: v[1], down: v[2]), to: .q2_K)
            }
        }
        overlay.set(replaced)
        let lowbitReference = try Transformer(source: source, experts: overlay, options: ExecutorOptions(threads: 2))
        let expectedLowbit = try lowbitReference.forward(tokens: [token], cache: lowbitReference.makeCache())
        XCTAssertFalse(expectedLowbit == expectedExact, "the copies must change something for this test to mean anything")

        let model = try Model(path: path, options: ExecutorOptions(threads: 2), memory: .init(expertCache: .fraction(0.5), onMiss: .lowbit))
        let store = try XCTUnwrap(model.pagedExperts)
        defer { store.stopLoaders() }
        XCTAssertTrue(try model.forward(tokens: [token], cache: model.makeCache(1)) == expectedLowbit, "lowbit logits differ from the copies' model")
        let m = store.metrics
        let steps = c.moeLayers.count * c.expertsPerToken
        XCTAssertEqual(m.misses, steps)
        XCTAssertEqual(m.lowbitMisses, steps)
        XCTAssertGreaterThan(m.lowbitBytesRead, 0)
        XCTAssertTrue(model.lossyLabel?.contains("LOSSY") == true)

        // The exact experts were queued for the loader thread; the next step finds them (waiting
        // for any still in flight) and is exact.
        XCTAssertEqual(store.residentKeys.count, steps)
        XCTAssertTrue(try model.forward(tokens: [token], cache: model.makeCache(1)) == expectedExact, "the step after the loads is not exact")
        XCTAssertEqual(store.metrics.lowbitMisses, steps, "no further lowbit misses once the exact experts are in")

        // --on-miss exact (the default) on the same store: the model's own logits.
        let exactModel = try Model(path: path, options: ExecutorOptions(threads: 2), memory: .init(expertCache: .fraction(0.5)))
        XCTAssertTrue(try exactModel.forward(tokens: [token], cache: exactModel.makeCache(1)) == expectedExact)
        XCTAssertEqual(exactModel.pagedExperts?.metrics.lowbitMisses, 0)
        XCTAssertNil(exactModel.lossyLabel)
    }
}
