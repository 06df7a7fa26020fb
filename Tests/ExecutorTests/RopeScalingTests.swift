import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// RoPE scaling (linear, YaRN, llama3) against transformers (tools/make_rope_fixtures.py):
/// the frequencies and attention factor transformers' `ROPE_INIT_FUNCTIONS` computes for each
/// configuration, and the logits of the committed tiny models re-run with scaled RoPE, from
/// `config.json` and from a GGUF written by llama.cpp's converter.
final class RopeScalingTests: XCTestCase {
    struct Record: Decodable {
        struct Frequencies: Decodable {
            let name: String
            let family: String
            let inverse_frequencies: [Double]
            let attention_factor: Double
            let softmax_scale_multiplier: Double?
        }
        struct Variant: Decodable {
            let family: String
            let logits: [String]
            let moved_by_scaling: Double
        }
        let frequencies: [Frequencies]
        let sequences: [[Int]]
        let variants: [String: Variant]
        let gguf: [String: String]
    }

    func record() throws -> Record {
        try JSONDecoder().decode(Record.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("rope/rope.json")))
    }

    /// The case's `config` object, raw.
    func rawConfig(_ name: String) throws -> [String: Any] {
        let all = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.root.appendingPathComponent("rope/rope.json"))) as? [String: Any])
        let cases = try XCTUnwrap(all["frequencies"] as? [[String: Any]])
        return try XCTUnwrap(cases.first { $0["name"] as? String == name }?["config"] as? [String: Any])
    }

    func configuration(_ values: [String: Any], path: String) throws -> ModelConfiguration {
        let family = try ModelFamilies.family(hfModelType: try XCTUnwrap(values["model_type"] as? String))
        let c = try family.configuration(hf: HFConfigReader(values, path: path, configClass: family.hfConfigClass))
        try c.validate(source: path)
        return c
    }

    func testFrequenciesAndAttentionFactorMatchTransformers() throws {
        let record = try record()
        XCTAssertEqual(record.frequencies.count, 6)
        for expected in record.frequencies {
            let c = try configuration(try rawConfig(expected.name), path: expected.name)
            XCTAssertNotNil(c.ropeScaling, expected.name)
            let rope = Rope(configuration: c)
            XCTAssertEqual(rope.inverseFrequencies.count, expected.inverse_frequencies.count, expected.name)
            for (i, (ours, theirs)) in zip(rope.inverseFrequencies, expected.inverse_frequencies).enumerated() {
                XCTAssertEqual(Double(ours), theirs, accuracy: 2e-6 * theirs, "\(expected.name): frequency \(i)")
            }
            XCTAssertEqual(Double(rope.attentionFactor), expected.attention_factor, accuracy: 1e-6, expected.name)
            if let multiplier = expected.softmax_scale_multiplier {
                XCTAssertEqual(try XCTUnwrap(c.ropeScaling).softmaxScaleMultiplier, multiplier, accuracy: 1e-12, expected.name)
            }
        }
    }

    func testScaledModelsMatchTransformersFromConfigAndGGUF() throws {
        let record = try record()
        let dir = TemporaryDirectory()
        var checked = 0
        func compare(_ model: Model, _ variant: Record.Variant, _ label: String) throws {
            XCTAssertGreaterThan(variant.moved_by_scaling, 0.05, "\(label): the scaling must change transformers' logits")
            for (s, tokens) in record.sequences.enumerated() {
                let expected = try NPY.read(path: Fixtures.path("rope/\(variant.logits[s])"))
                let logits = try model.logits(tokens: tokens)
                let diff = maxAbsDifference(Array(logits.joined()), expected.values)
                XCTAssertLessThanOrEqual(diff, ParityTests.logitTolerance, "\(label) sequence \(s): logits differ by \(diff)")
                checked += 1
            }
        }
        for (name, variant) in record.variants.sorted(by: { $0.key < $1.key }) {
            let copy = try dir.copy(fixture: "\(variant.family)/hf", to: name, excluding: ["config.json"])
            try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("rope/\(name)/config.json"), to: copy.appendingPathComponent("config.json"))
            let model = try Model(path: copy.path, options: ParityTests.exact)
            XCTAssertNotNil(model.configuration.ropeScaling, name)
            try compare(model, variant, name)
        }
        for (file, name) in record.gguf {
            let model = try Model(path: Fixtures.path("rope/\(file)"), options: ParityTests.exact)
            let scaling = try XCTUnwrap(model.configuration.ropeScaling, file)
            XCTAssertEqual(scaling, .init(kind: .yarn, factor: 4, originalContextLength: 64, betaFast: 8, betaSlow: 1), file)
            try compare(model, try XCTUnwrap(record.variants[name]), file)
        }
        XCTAssertEqual(checked, 10)
    }

    func testInspectShowsTheScalingAndWhereItCameFrom() throws {
        let dir = TemporaryDirectory()
        let copy = try dir.copy(fixture: "qwen3moe/hf", to: "yarn", excluding: ["config.json"])
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("rope/qwen3moe-yarn-untruncated/config.json"), to: copy.appendingPathComponent("config.json"))
        let text = try ModelInspection(source: ModelSource(path: copy.path)).text
        for line in ["rope type yarn (file: rope_scaling.rope_type)", "rope factor 4 (file: rope_scaling.factor)",
                     "rope truncate false (file: rope_scaling.truncate)", "rope attention_factor 1.25 (file: rope_scaling.attention_factor)",
                     "(yarn factor 4, original context 64, beta 8/1, untruncated, attention ×1.25)"] {
            XCTAssertTrue(text.contains(line), "inspect lacks \(line):\n\(text)")
        }
        let gguf = try ModelInspection(source: ModelSource(path: Fixtures.path("rope/qwen3moe-yarn.gguf"))).text
        for line in ["rope type yarn (file: qwen3moe.rope.scaling.type)", "rope original context 64 (file: qwen3moe.rope.scaling.original_context_length)",
                     "rope beta_fast 8 (file: qwen3moe.rope.scaling.yarn_beta_fast)", "rope extrapolation factor 1 (default of llama.cpp)"] {
            XCTAssertTrue(gguf.contains(line), "inspect lacks \(line):\n\(gguf)")
        }
    }

    func testUnsupportedOrContradictoryScalingIsRefusedNamingTheKey() throws {
        let base = try rawConfig("yarn-qwen3-long")
        func refusal(_ edit: (inout [String: Any]) -> Void) -> String {
            var values = base
            edit(&values)
            do {
                _ = try configuration(values, path: "config.json")
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["rope_type": "dynamic", "factor": 2.0] }.contains("rope_scaling.rope_type \"dynamic\""))
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["type": "longrope", "factor": 2.0] }.contains("rope_scaling.type \"longrope\""))
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["type": "linear"] }.contains("rope_scaling.factor is required"))
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["rope_type": "llama3", "factor": 8.0] }.contains("rope_scaling.low_freq_factor is required"))
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["rope_type": "yarn", "factor": "four"] }.contains("rope_scaling.factor should be a number"))
        XCTAssertTrue(refusal {
            $0["rope_parameters"] = ["rope_type": "linear", "factor": 4.0]
        }.contains("describe different RoPE scalings"))
        XCTAssertTrue(refusal { $0["rope_scaling"] = ["rope_type": "yarn", "factor": -1.0] }.contains("must be positive"))
    }
}
