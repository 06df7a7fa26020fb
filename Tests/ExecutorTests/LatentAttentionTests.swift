import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// DeepSeek-V2/V3 and GLM-4.5 beyond the parity fixtures: YaRN against transformers, the
/// compressed cache's size, what `moe inspect` and `--memory` see, and the shared experts.
final class LatentAttentionTests: XCTestCase {
    struct Record: Decodable {
        struct Variant: Decodable {
            let family: String
            let sequences: [[Int]]
            let logits: [String]
            let moved_by_scaling: Double
        }
        let variants: [String: Variant]
    }

    /// tools/make_deepseek_fixtures.py --yarn: each case's weights under a YaRN config (factor 4,
    /// original context 16, mscale 1, mscale_all_dim 0.8) give transformers' logits. V3 and GLM
    /// multiply the softmax scale by mscale²; the V2 config is written by transformers 4.57, whose
    /// attention does not, so the same reader must leave it out there.
    func testYarnMatchesTransformers() throws {
        let record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("rope-deepseek/rope.json")))
        let dir = TemporaryDirectory()
        var checked = 0
        for (name, variant) in record.variants.sorted(by: { $0.key < $1.key }) {
            XCTAssertGreaterThan(variant.moved_by_scaling, 0.05, "\(name): the scaling must change transformers' logits")
            let copy = try dir.copy(fixture: "\(variant.family)/hf", to: name, excluding: ["config.json"])
            try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("rope-deepseek/\(name)/config.json"), to: copy.appendingPathComponent("config.json"))
            let model = try Model(path: copy.path, options: ParityTests.exact)
            XCTAssertEqual(model.configuration.ropeScaling?.kind, .yarn, name)
            if let m = model.configuration.latentAttention {
                let expected: Float = variant.family == "deepseek-v2" ? 1 : Float(pow(0.1 * 0.8 * log(4.0) + 1, 2))
                XCTAssertEqual(m.softmaxScaleFactor, expected, accuracy: 1e-6, name)
            }
            for (s, tokens) in variant.sequences.enumerated() {
                let expected = try NPY.read(path: Fixtures.path("rope-deepseek/\(variant.logits[s])"))
                let diff = maxAbsDifference(Array(try model.logits(tokens: tokens).joined()), expected.values)
                XCTAssertLessThanOrEqual(diff, ParityTests.logitTolerance, "\(name) sequence \(s): logits differ by \(diff)")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 6)
    }

    /// The cache holds kv_lora_rank + qk_rope_head_dim floats per layer and position, not every
    /// head's key and value; inspect states both and the memory plan uses the compressed one.
    func testCompressedCacheSizeInInspectAndPlan() throws {
        let source = try ModelSource(path: Fixtures.path("deepseek-v2/hf"))
        let c = source.configuration
        let m = try XCTUnwrap(c.latentAttention)
        XCTAssertEqual(c.kvDim, 32 + 8)  // the fixture's kv_lora_rank and qk_rope_head_dim
        XCTAssertEqual(c.valueCacheDim, 0)
        XCTAssertEqual(c.kvBytesPerPosition(elementSize: 2), 3 * 40 * 2)
        XCTAssertEqual(c.uncompressedKVBytesPerPosition(elementSize: 2), 3 * 4 * (16 + 8 + 12) * 2)
        XCTAssertEqual(m.queryRank, 48)
        let model = try Model(path: source.path, options: ParityTests.exact)
        let cache = model.transformer.makeCache(maxPositions: 100)
        _ = try model.transformer.forward(tokens: [1, 2, 3], cache: cache)
        XCTAssertEqual(cache.byteCount, 3 * 64 * 40 * 4)  // capacity grows to 64 positions, f32, keys only
        let text = try ModelInspection(source: source).text
        for line in ["kv cache     240 B per position (f16); a plain cache would take 864 B (3.6× more)",
                     "2 shared experts as one MLP (ffn 32, always resident)",
                     "routing      softmax, best 2 of 4 groups (best expert), top-k weights not renormalised, × 1.5",
                     "leading dense layers 1 (file: first_k_dense_replace)"] {
            XCTAssertTrue(text.contains(line), "inspect lacks \(line):\n\(text)")
        }
        let v3 = try ModelInspection(source: ModelSource(path: Fixtures.path("deepseek-v3/model-q8_0.gguf"))).text
        XCTAssertTrue(v3.contains("sigmoid + selection bias, best 2 of 4 groups (sum of best two), top-k weights renormalised, × 2.5"), v3)
    }

    /// Shared experts and dense layers are dense weights: a paged store holds only routed experts,
    /// and the logits under a one-layer pool equal the resident ones.
    func testSharedExpertsStayResidentUnderPaging() throws {
        for name in ["deepseek-v3/model-f32.gguf", "glm4moe/hf"] {
            let source = try ModelSource(path: Fixtures.path(name))
            let catalog = try ExpertCatalog(source: source)
            let store = try PagedExpertStore(catalog: catalog, capacity: catalog.minimumPool(k: source.configuration.expertsPerToken), policy: .lru)
            let paged = try Transformer(source: source, experts: store, options: ParityTests.exact)
            let resident = try Transformer(source: source, options: ParityTests.exact)
            let tokens = [5, 17, 200, 3, 99, 41]
            XCTAssertEqual(try paged.forward(tokens: tokens, cache: paged.makeCache()), try resident.forward(tokens: tokens, cache: resident.makeCache()), name)
            for l in 0..<source.configuration.layerCount {
                let paged = catalog.entry(ExpertKey(layer: l, expert: 0)) != nil
                XCTAssertEqual(paged, source.configuration.layerKinds[l] == .moe, "\(name): layer \(l) paged experts")
            }
        }
    }
}
