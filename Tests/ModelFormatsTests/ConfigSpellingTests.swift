import Foundation
import ModelFormats
import TestSupport
import XCTest

/// How `config.json` keys are read: class defaults compared with what transformers 4.57 and 5.x
/// make of a config that leaves them out (Tests/Fixtures/config-defaults.json, written by
/// tools/make_config_variants.py), every spelling, and what is refused.
final class ConfigSpellingTests: XCTestCase {
    func configuration(_ values: [String: Any]) throws -> ModelConfiguration {
        let family = try ModelFamilies.family(hfModelType: values["model_type"] as! String)
        let reader = HFConfigReader(values, path: "/m/config.json", configClass: family.hfConfigClass)
        var config = try family.configuration(hf: reader)
        config.provenance = reader.provenance
        return config
    }

    func testMissingKeysTakeTransformersDefaults() throws {
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("config-defaults.json"))
        let configs = try XCTUnwrap((JSONSerialization.jsonObject(with: data) as? [String: Any])?["configs"] as? [String: [String: Any]])
        var checked = 0
        for (name, entry) in configs.sorted(by: { $0.key < $1.key }) {
            let className = try XCTUnwrap(entry["class"] as? String)
            let resolved = try XCTUnwrap(entry["resolved"] as? [String: [String: Any]])
            XCTAssertEqual(Set(resolved.keys.compactMap(\.first)), ["4", "5"], name)
            for (version, expected) in resolved {
                var values = try XCTUnwrap(entry["config"] as? [String: Any])
                values["transformers_version"] = version
                let label = "\(name) as transformers \(version)"
                if expected["sliding window"] as? String == "mixed" {
                    XCTAssertThrowsError(try configuration(values), label) { error in
                        XCTAssertTrue("\(error)".contains("max_window_layers"), "\(label): \(error)")
                    }
                    checked += 1
                    continue
                }
                let c = try configuration(values)
                func number(_ key: String) -> Double? { (expected[key] as? NSNumber)?.doubleValue }
                XCTAssertEqual(c.expertCount, expected["experts"] as? Int, label)
                XCTAssertEqual(c.expertsPerToken, expected["top-k"] as? Int, label)
                XCTAssertEqual(c.kvHeadCount, expected["kv heads"] as? Int, label)
                XCTAssertEqual(c.headDim, expected["head dim"] as? Int, label)
                XCTAssertEqual(expected["rope type"] as? String, "default", label)
                XCTAssertEqual(c.ropeTheta, number("rope theta"), label)
                XCTAssertEqual(c.rmsNormEpsilon, number("rms eps").map(Float.init), label)
                XCTAssertEqual(c.contextLength, expected["context"] as? Int, label)
                XCTAssertEqual(expected["activation"] as? String, "silu", label)
                XCTAssertEqual(c.tiedEmbeddings, expected["tied embeddings"] as? Bool, label)
                XCTAssertEqual(c.routing.normalizeTopK, expected["top-k renormalised"] as? Bool, label)
                XCTAssertEqual(c.slidingWindow, expected["sliding window"] as? Int, label)
                if let bias = expected["qkv bias"] as? Bool { XCTAssertEqual(c.attentionBias, bias, label) }
                if let bias = expected["attention bias"] as? Bool { XCTAssertFalse(bias, label) }
                if let shared = expected["shared expert ffn"] as? Int { XCTAssertEqual(c.sharedExpertFFNSize, shared, label) }
                if expected.keys.contains("clip qkv") { XCTAssertEqual(c.clipQKV, number("clip qkv").map(Float.init), label) }
                if let step = expected["sparse step"] as? Int, let dense = expected["mlp-only layers"] as? [Int] {
                    let kinds = (0..<c.layerCount).map { !dense.contains($0) && c.expertCount > 0 && ($0 + 1) % step == 0 }
                    XCTAssertEqual(c.layerKinds.map { $0 == .moe }, kinds, label)
                }
                // Nothing but the sizes was in the file: every recorded value is the class's default.
                let provenance = try XCTUnwrap(c.provenance, label)
                XCTAssertTrue(Set(["top-k", "experts", "rope theta", "rms eps", "context", "sliding window"]).isSubset(of: provenance.map(\.setting)), label)
                for entry in provenance where !(values.keys.contains("use_sliding_window") && entry.setting == "sliding window") {
                    XCTAssertEqual(entry.origin, .default, "\(label): \(entry)")
                    XCTAssertEqual(entry.source, className, "\(label): \(entry)")
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, 14)
    }

    func qwen3(_ edit: (inout [String: Any]) -> Void) throws -> ModelConfiguration {
        var values: [String: Any] = ["model_type": "qwen3_moe", "vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 8, "num_key_value_heads": 2, "moe_intermediate_size": 32]
        edit(&values)
        return try configuration(values)
    }

    func testEverySpellingOfOneValue() throws {
        XCTAssertEqual(try qwen3 { $0["num_experts"] = 10 }.expertCount, 10)
        XCTAssertEqual(try qwen3 { $0["num_local_experts"] = 10 }.expertCount, 10)
        XCTAssertEqual(try qwen3 { $0["num_local_experts"] = 10; $0["num_experts"] = 10 }.expertCount, 10)
        let theta = try qwen3 { $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 1e6] }
        XCTAssertEqual(theta.ropeTheta, 1e6)
        XCTAssertTrue(theta.provenance!.contains(.init(setting: "rope theta", value: "1000000", origin: .file, source: "rope_parameters.rope_theta")))
        XCTAssertEqual(try qwen3 { $0["rope_theta"] = 1e6; $0["rope_scaling"] = ["type": "default"] }.ropeTheta, 1e6)
        XCTAssertEqual(try qwen3 { $0["rope_theta"] = 1e6; $0["rope_parameters"] = ["rope_type": "default"] }.ropeTheta, 1e6)
        XCTAssertEqual(try qwen3 { $0["rope_scaling"] = [:]; $0["rope_parameters"] = ["rope_theta": 2e5] }.ropeTheta, 2e5)
        // One object per layer type, all alike.
        let perType = try qwen3 {
            $0["layer_types"] = ["full_attention", "full_attention"]
            $0["rope_parameters"] = ["full_attention": ["rope_type": "default", "rope_theta": 3e5], "sliding_attention": ["rope_type": "default", "rope_theta": 3e5]]
        }
        XCTAssertEqual(perType.ropeTheta, 3e5)
        XCTAssertEqual(try qwen3 { $0["head_dim"] = 24 }.headDim, 24)
        XCTAssertEqual(try qwen3 { $0["num_key_value_heads"] = NSNull() }.kvHeadCount, 8)
        XCTAssertEqual(try qwen3 { $0["use_sliding_window"] = true; $0["sliding_window"] = NSNull() }.slidingWindow, nil)
        XCTAssertEqual(try qwen3 { $0["use_sliding_window"] = true; $0["sliding_window"] = 64 }.slidingWindow, 64)
        XCTAssertEqual(try qwen3 { $0["use_sliding_window"] = false; $0["sliding_window"] = 64 }.slidingWindow, nil)
    }

    func testRefusedNamingTheKey() throws {
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("rope_parameters.rope_type", { $0["rope_parameters"] = ["rope_type": "dynamic", "factor": 4.0] }),
            ("rope_scaling.type", { $0["rope_scaling"] = ["type": "dynamic", "factor": 2.0] }),
            ("rope_scaling.rope_type", { $0["rope_scaling"] = ["rope_type": "longrope"] }),
            ("rope_parameters.sliding_attention.rope_type", {
                $0["layer_types"] = ["full_attention", "sliding_attention"]
                $0["rope_parameters"] = ["full_attention": ["rope_type": "default"], "sliding_attention": ["rope_type": "yarn", "factor": 4.0]]
            }),
            ("rope_parameters.full_attention.rope_theta", {
                $0["layer_types"] = ["full_attention", "sliding_attention"]
                $0["rope_parameters"] = ["full_attention": ["rope_theta": 1e4], "sliding_attention": ["rope_theta": 1e6]]
            }),
            ("rope_parameters.rope_theta", { $0["rope_theta"] = 1e4; $0["rope_parameters"] = ["rope_theta": 1e6] }),
            ("rope_parameters.partial_rotary_factor", { $0["rope_parameters"] = ["partial_rotary_factor": 0.5] }),
            ("partial_rotary_factor", { $0["partial_rotary_factor"] = 0.25 }),
            ("rope_parameters", { $0["rope_parameters"] = "default" }),
            ("num_experts", { $0["num_experts"] = 8; $0["num_local_experts"] = 10 }),
            ("hidden_act", { $0["hidden_act"] = "gelu" }),
            ("attention_bias", { $0["attention_bias"] = true }),
            ("layer_types", { $0["layer_types"] = ["full_attention"] }),
            ("layer_types", { $0["layer_types"] = ["full_attention", "chunked_attention"] }),
        ]
        for (key, edit) in cases {
            XCTAssertThrowsError(try qwen3(edit), key) { error in
                guard case let .invalidConfig(path, reason)? = error as? ModelFormatError else { return XCTFail("\(key): \(error)") }
                XCTAssertEqual(path, "/m/config.json")
                XCTAssertTrue(reason.hasPrefix(key), "\(key): \(reason)")
            }
        }
        // Qwen2-MoE: some layers sliding, others not (layer_types, or 5.x's derived pattern).
        let qwen2: [String: Any] = ["model_type": "qwen2_moe", "vocab_size": 352, "hidden_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 8, "moe_intermediate_size": 32, "use_sliding_window": true]
        var mixed = qwen2
        mixed["layer_types"] = ["sliding_attention", "full_attention"]
        XCTAssertThrowsError(try configuration(mixed)) { XCTAssertTrue("\($0)".contains("layer_types gives some layers"), "\($0)") }
        var allSliding = qwen2
        allSliding["layer_types"] = ["sliding_attention", "sliding_attention"]
        allSliding["sliding_window"] = 128
        XCTAssertEqual(try configuration(allSliding).slidingWindow, 128)
        allSliding["use_sliding_window"] = false
        XCTAssertThrowsError(try configuration(allSliding)) { XCTAssertTrue("\($0)".contains("use_sliding_window is not true"), "\($0)") }
    }
}
