import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// GGUFs whose experts are in llama.cpp's grid types (IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S — what the
/// largest models ship in) load, run on the fast kernels close to the dequantize-and-dot
/// reference, and page bit-identically to resident, straight from the GGUF and from a store.
///
/// The model is the Mixtral fixture widened to 256 (these types need rows of 256) with random
/// weights: random f32 dense tensors and random expert blocks with small finite scales. The
/// dequantizers themselves are held to gguf.quants in DequantizeTests, the kernels to their
/// scalar references in KernelTests; this checks the path from file to logits.
final class GridQuantExpertTests: XCTestCase {
    /// The Mixtral fixture with every 64-wide dimension made 256 and experts of `type`.
    func widenedModel(_ type: GGMLType, in dir: TemporaryDirectory) throws -> String {
        var writer = GGUFWriter(copying: try GGUFFile(path: Fixtures.path("mixtral/model-f32.gguf")))
        writer.set("llama.embedding_length", .uint32(256))
        writer.set("llama.feed_forward_length", .uint32(256))
        var rng = SplitMix64(seed: UInt64(type.rawValue))
        for i in writer.tensors.indices {
            let shape = writer.tensors[i].shape.map { $0 == 64 ? 256 : $0 }
            let count = shape.reduce(1, *)
            writer.tensors[i].shape = shape
            if writer.tensors[i].name.contains("_exps") {
                let block = type.traits.bytesPerBlock
                var bytes = (0..<(count / 256 * block)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                // f16 d at byte 0: ±2^-11 (IQ2) or ±2^-13 (IQ3, whose grids and scales are larger), so
                // that weights stay below ~0.2 and the random network does not amplify rounding.
                let exponent: UInt8 = type == .iq2_xxs || type == .iq2_xs ? 0x10 : 0x08
                for b in 0..<(bytes.count / block) {
                    bytes[b * block] = UInt8(truncatingIfNeeded: rng.next())
                    bytes[b * block + 1] = exponent | UInt8(rng.next() & 0x3) | (rng.next() & 1 == 0 ? 0 : 0x80)
                }
                writer.tensors[i].type = type
                writer.tensors[i].data = Data(bytes)
            } else {
                let norm = writer.tensors[i].name.hasSuffix("norm.weight")
                let floats = (0..<count).map { _ in norm ? 1 : Float(rng.unit() * 2 - 1) * 0.08 }
                writer.tensors[i].type = .f32
                writer.tensors[i].data = floats.withUnsafeBytes { Data($0) }
            }
        }
        let path = dir.path("mixtral-256-\(type).gguf")
        try writer.write(to: path)
        return path
    }

    func pooled(_ path: String) throws -> (Transformer, PagedExpertStore) {
        let source = try ModelSource(path: path)
        let catalog = try ExpertCatalog(source: source)
        let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: source.configuration.expertsPerToken))
        return (try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 2)), store)
    }

    func testGridTypeExpertsLoadRunAndPage() throws {
        let tokens = try Fixtures.manifest("mixtral").sequences[1]
        for type in [GGMLType.iq2_xxs, .iq2_xs, .iq3_xxs, .iq3_s] {
            let dir = TemporaryDirectory()
            let gguf = try widenedModel(type, in: dir)
            let fast = try Model(path: gguf, options: ExecutorOptions(threads: 2))
            XCTAssertEqual(fast.configuration.hiddenSize, 256)
            let logits = try fast.transformer.forward(tokens: tokens, cache: fast.transformer.makeCache())
            let reference = try Model(path: gguf, options: ExecutorOptions(threads: 2, kernels: .reference))
            let exact = try reference.transformer.forward(tokens: tokens, cache: reference.transformer.makeCache())
            XCTAssertEqual(logits.count, exact.count)
            let largest = exact.map(abs).max() ?? 0
            let worst = zip(logits, exact).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertTrue(largest.isFinite && largest > 0, "\(type): logits \(largest)")
            // 8-bit activations against f32: a few per cent of the largest logit at most.
            XCTAssertLessThan(worst, 0.03 * largest, "\(type): fast vs reference (worst \(worst), largest \(largest))")

            let (paged, store) = try pooled(gguf)
            XCTAssertTrue(try paged.forward(tokens: tokens, cache: paged.makeCache()) == logits, "\(type) GGUF: paged logits differ")
            XCTAssertGreaterThan(store.metrics.misses, 0)

            let moe = dir.path("model.moe")
            _ = try Converter.convert(input: gguf, output: moe, options: .init(plan: BitPlan(default: "keep"), compression: .none))
            let (fromStore, _) = try pooled(moe)
            XCTAssertTrue(try fromStore.forward(tokens: tokens, cache: fromStore.makeCache()) == logits, "\(type) .moe: paged logits differ")
        }
    }

    /// No quantizer for the grid types: a store cannot be converted to them, and says which types it can write.
    func testConvertingToAGridTypeIsRefused() {
        XCTAssertTrue(BitPlan.storableType("iq2_xxs") == nil)
        XCTAssertFalse(BitPlan.writableTypeNames.contains("iq2_xxs"))
        XCTAssertThrowsError(try BitPlan(default: "iq3_s").resolve(for: try ModelSource(path: Fixtures.path("mixtral/model-q8_0.gguf")).configuration)) { error in
            XCTAssertTrue("\(error)".contains("iq3_s is not one the store can write"), "\(error)")
        }
    }
}
