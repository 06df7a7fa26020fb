import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// The same weights under `config.json` in transformers 5.x's spelling (written by transformers
/// 5.x itself: tools/make_config_variants.py) give transformers' reference logits and expert
/// choices, as under the 4.57 spelling the fixtures were made with.
final class ConfigVariantTests: XCTestCase {
    /// A copy of the case's HF directory whose config.json is `config`.
    func directory(_ name: String, in dir: TemporaryDirectory, config: [String: Any]) throws -> String {
        let copy = try dir.copy(fixture: "\(name)/hf", to: name, excluding: ["config.json"])
        try JSONSerialization.data(withJSONObject: config).write(to: copy.appendingPathComponent("config.json"))
        return copy.path
    }

    func json(_ relative: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.root.appendingPathComponent(relative))) as? [String: Any])
    }

    func testV5ConfigsGiveTransformersLogits() throws {
        let dir = TemporaryDirectory()
        var families = Set<String>()
        var compared = 0
        for name in Fixtures.cases where FileManager.default.fileExists(atPath: Fixtures.path("\(name)/config-v5.json")) {
            let v5 = try json("\(name)/config-v5.json")
            XCTAssertEqual((v5["transformers_version"] as? String)?.first, "5", name)
            XCTAssertNotNil(v5["rope_parameters"], "\(name): the 5.x spelling keeps RoPE in rope_parameters")
            XCTAssertNil(v5["rope_theta"], name)
            let manifest = try Fixtures.manifest(name)
            let reference = try XCTUnwrap(manifest.references["f32"], name)
            let model = try Model(path: directory(name, in: dir, config: v5), options: ParityTests.exact)
            let old = try ModelSource(path: Fixtures.path("\(name)/hf")).configuration
            var new = model.configuration
            XCTAssertNotEqual(new.provenance, old.provenance, "\(name): read from other keys")
            new.provenance = old.provenance
            XCTAssertEqual(new, old, "\(name): the two spellings describe one model")
            compared += try assertMatchesReference(model, case: name, manifest: manifest, reference: reference, label: "\(name) (config-v5.json)")
            families.insert(manifest.hf_model_type)
        }
        XCTAssertEqual(families, ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"])
        XCTAssertGreaterThanOrEqual(compared, 18)
    }

    /// Keys left out whose class defaults equal the fixture's values: same logits, and `moe
    /// inspect` says which values are defaults.
    func testMissingKeysTakeTheClassDefaultAndInspectSaysSo() throws {
        let dir = TemporaryDirectory()
        var config = try json("qwen3moe/config-v5.json")
        for key in ["rms_norm_eps", "decoder_sparse_step", "mlp_only_layers", "use_sliding_window", "sliding_window", "hidden_act"] {
            XCTAssertNotNil(config.removeValue(forKey: key), key)
        }
        let path = try directory("qwen3moe", in: dir, config: config)
        let inspection = try ModelInspection(source: ModelSource(path: path))
        for line in ["rms eps 1e-06 (default of Qwen3MoeConfig)", "sparse step 1 (default of Qwen3MoeConfig)",
                     "mlp-only layers [] (default of Qwen3MoeConfig)", "sliding window none (default of Qwen3MoeConfig)",
                     "activation silu (default of Qwen3MoeConfig)", "experts 8 (file: num_local_experts)",
                     "rope theta 500000 (file: rope_parameters.rope_theta)", "top-k 2 (file: num_experts_per_tok)"] {
            XCTAssertTrue(inspection.text.contains(line), "inspect text lacks \(line):\n\(inspection.text)")
        }
        let encoded = try JSONEncoder().encode(inspection)
        let decoded = try JSONDecoder().decode(ModelInspection.self, from: encoded)
        let eps = try XCTUnwrap(decoded.configuration.provenance?.first { $0.setting == "rms eps" })
        XCTAssertEqual(eps, .init(setting: "rms eps", value: "1e-06", origin: .default, source: "Qwen3MoeConfig"))
        let manifest = try Fixtures.manifest("qwen3moe")
        let model = try Model(path: path, options: ParityTests.exact)
        _ = try assertMatchesReference(model, case: "qwen3moe", manifest: manifest, reference: XCTUnwrap(manifest.references["f32"]), label: "qwen3moe (defaults)")
    }

    /// RoPE types SwiftMoE does not compute (YaRN, linear and llama3 are: RopeScalingTests).
    func testUnsupportedRopeTypesAreRefusedNamingTheKey() throws {
        let dir = TemporaryDirectory()
        for (name, edit, key) in [
            ("qwen3moe", { (c: inout [String: Any]) in c["rope_parameters"] = ["rope_type": "dynamic", "factor": 4.0, "rope_theta": 5e5, "original_max_position_embeddings": 1024] }, "rope_parameters.rope_type"),
            ("qwen2moe", { (c: inout [String: Any]) in c["rope_scaling"] = ["type": "longrope", "factor": 4.0] }, "rope_scaling.type"),
            ("mixtral", { (c: inout [String: Any]) in c["rope_scaling"] = ["rope_type": "dynamic", "factor": 2.0] }, "rope_scaling.rope_type"),
            ("olmoe", { (c: inout [String: Any]) in c["rope_parameters"] = ["rope_type": "longrope", "factor": 8.0] }, "rope_parameters.rope_type"),
        ] {
            var config = try json("\(name)/config-v5.json")
            edit(&config)
            let path = try directory(name, in: dir, config: config)
            XCTAssertThrowsError(try Model(path: path), name) { error in
                guard case let .invalidConfig(file, reason)? = error as? ModelFormatError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(file, path + "/config.json")
                XCTAssertTrue(reason.hasPrefix(key) && reason.contains("not supported"), "\(name): \(reason)")
            }
        }
    }
}
