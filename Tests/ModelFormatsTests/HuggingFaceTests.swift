import Foundation
import ModelFormats
import Quantization
import TestSupport
import XCTest

final class HuggingFaceTests: XCTestCase {
    /// Writes a safetensors file from a raw JSON header and data.
    func safetensors(header: String, data: Data = Data(), lengthOverride: UInt64? = nil) -> Data {
        var out = Data()
        let length = lengthOverride ?? UInt64(header.utf8.count)
        withUnsafeBytes(of: length.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        out.append(data)
        return out
    }

    func testShardedCheckpointReadsThroughIndex() throws {
        let dir = try HFDirectory(path: Fixtures.path("mixtral/hf"))
        XCTAssertGreaterThanOrEqual(dir.shards.count, 2)
        let gate = try XCTUnwrap(dir.tensor("model.layers.1.block_sparse_moe.experts.3.w1.weight"))
        XCTAssertEqual(gate.type, .f32)
        XCTAssertEqual(gate.shape.count, 2)
        XCTAssertEqual(gate.shape[0], 64)  // ggml order: inputs first
        let source = try ModelSource(path: Fixtures.path("mixtral/hf"))
        XCTAssertEqual(source.configuration.architecture, .mixtral)
        XCTAssertEqual(source.configuration.ropeStyle, .halfSplit)
    }

    func testBF16AndF16Checkpoints() throws {
        for (path, type) in [("mixtral/hf-bf16", GGMLType.bf16), ("qwen2moe/hf-f16", .f16)] {
            let source = try ModelSource(path: Fixtures.path(path))
            XCTAssertEqual(try source.weight(.query(0))?.type, type, path)
        }
    }

    func testSafetensorsParsesTypesAndShapes() throws {
        let dir = TemporaryDirectory()
        var values = Data()
        for v: Float in [1, 2, 3, 4, 5, 6] { withUnsafeBytes(of: v.bitPattern.littleEndian) { values.append(contentsOf: $0) } }
        let header = #"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#
        try safetensors(header: header, data: values).write(to: URL(fileURLWithPath: dir.path("a.safetensors")))
        let file = try SafetensorsFile(path: dir.path("a.safetensors"))
        XCTAssertEqual(file.metadata["format"], "pt")
        let w = try XCTUnwrap(file.tensor("w"))
        XCTAssertEqual(w.shape, [3, 2])
        XCTAssertEqual(w.rowCount, 2)
        XCTAssertEqual(try w.toFloats(), [1, 2, 3, 4, 5, 6])
    }

    func testDamagedSafetensors() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("bad.safetensors")
        let cases: [(Data, (ModelFormatError) -> Bool)] = [
            (Data([1, 2, 3]), { if case .truncated = $0 { return true } else { return false } }),
            (safetensors(header: "{}", lengthOverride: 1 << 40), { if case .implausible = $0 { return true } else { return false } }),
            (safetensors(header: "{}", lengthOverride: 100), { if case .truncated = $0 { return true } else { return false } }),
            (safetensors(header: "not json"), { if case .notAModel = $0 { return true } else { return false } }),
            (safetensors(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: Data(count: 8)),
             { if case let .tensorOutOfBounds(_, tensor, _, _) = $0 { return tensor == "w" } else { return false } }),
            (safetensors(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#, data: Data(count: 16)),
             { if case let .invalidTensor(_, tensor, _) = $0 { return tensor == "w" } else { return false } }),
            (safetensors(header: #"{"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#, data: Data(count: 16)),
             { if case .implausible = $0 { return true } else { return false } }),
            (safetensors(header: #"{"w":{"dtype":"Q9","shape":[4],"data_offsets":[0,4]}}"#, data: Data(count: 4)),
             { if case let .invalidTensor(_, _, reason) = $0 { return reason.contains("Q9") } else { return false } }),
            (safetensors(header: #"{"w":{"shape":[4]}}"#), { if case .invalidTensor = $0 { return true } else { return false } }),
        ]
        for (i, (bytes, check)) in cases.enumerated() {
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafetensorsFile(path: path), "case \(i)") { error in
                guard let e = error as? ModelFormatError else { return XCTFail("case \(i): \(error)") }
                XCTAssertTrue(check(e), "case \(i): \(e)")
                XCTAssertTrue(e.description.contains(path), "case \(i): \(e)")
            }
        }
    }

    /// Copies a fixture HF directory so a test can damage it.
    func copyOfFixture(_ name: String) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        for file in try FileManager.default.contentsOfDirectory(atPath: Fixtures.path(name)) {
            try FileManager.default.copyItem(atPath: Fixtures.path("\(name)/\(file)"), toPath: dir.path(file))
        }
        return dir
    }

    func editConfig(_ dir: TemporaryDirectory, _ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: dir.path("config.json"))
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: url)
    }

    func assertSourceError(_ path: String, file: StaticString = #filePath, line: UInt = #line, _ check: (ModelFormatError) -> Bool) {
        XCTAssertThrowsError(try ModelSource(path: path), file: file, line: line) { error in
            guard let e = error as? ModelFormatError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "unexpected: \(e)", file: file, line: line)
        }
    }

    func testDirectoryProblems() throws {
        let empty = TemporaryDirectory()
        assertSourceError(empty.url.path) { if case let .notAModel(_, reason) = $0 { return reason.contains("config.json") } else { return false } }
        assertSourceError(empty.path("nothing-here")) { if case .cannotOpen = $0 { return true } else { return false } }

        let noWeights = try copyOfFixture("qwen3moe/hf")
        for f in try FileManager.default.contentsOfDirectory(atPath: noWeights.url.path) where f.hasSuffix(".safetensors") {
            try FileManager.default.removeItem(atPath: noWeights.path(f))
        }
        assertSourceError(noWeights.url.path) { if case let .notAModel(_, reason) = $0 { return reason.contains("safetensors") } else { return false } }

        let sharded = try copyOfFixture("mixtral/hf")
        let index = URL(fileURLWithPath: sharded.path("model.safetensors.index.json"))
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as! [String: Any]
        var map = json["weight_map"] as! [String: String]
        map["model.layers.0.extra.weight"] = map.values.first!
        json["weight_map"] = map
        try JSONSerialization.data(withJSONObject: json).write(to: index)
        assertSourceError(sharded.url.path) { if case let .invalidTensor(_, tensor, _) = $0 { return tensor == "model.layers.0.extra.weight" } else { return false } }
    }

    func testConfigurationProblems() throws {
        let dir = try copyOfFixture("qwen3moe/hf")
        try editConfig(dir) { $0["model_type"] = "gpt9" }
        assertSourceError(dir.url.path) { if case let .unknownArchitecture(name, known) = $0 { return name == "gpt9" && known.contains("mixtral") } else { return false } }

        try editConfig(dir) { $0["model_type"] = "qwen3_moe"; $0.removeValue(forKey: "hidden_size") }
        assertSourceError(dir.url.path) { if case let .missingConfigKey(_, key) = $0 { return key == "hidden_size" } else { return false } }

        try editConfig(dir) { $0["hidden_size"] = 64; $0["num_key_value_heads"] = 5 }
        assertSourceError(dir.url.path) { if case let .invalidConfig(_, reason) = $0 { return reason.contains("key/value heads") || reason.contains("evenly") } else { return false } }

        try editConfig(dir) { $0["num_key_value_heads"] = 2; $0["num_hidden_layers"] = 1_000_000_000 }
        assertSourceError(dir.url.path) { if case let .invalidConfig(_, reason) = $0 { return reason.contains("layer count") } else { return false } }

        try editConfig(dir) { $0["num_hidden_layers"] = 2; $0["hidden_size"] = "sixty-four" }
        assertSourceError(dir.url.path) { if case let .invalidConfig(_, reason) = $0 { return reason.contains("hidden_size") } else { return false } }

        try editConfig(dir) { $0["hidden_size"] = 64; $0["rope_scaling"] = ["rope_type": "dynamic", "factor": 4] }
        assertSourceError(dir.url.path) { if case let .invalidConfig(_, reason) = $0 { return reason.contains("dynamic") } else { return false } }
    }

    func testDenseLayerPatternsFromConfig() throws {
        let dense = try ModelSource(path: Fixtures.path("qwen3moe-dense/hf")).configuration
        XCTAssertTrue(dense.layerKinds.contains(.dense))
        XCTAssertTrue(dense.layerKinds.contains(.moe))
        let stepped = try ModelSource(path: Fixtures.path("qwen2moe-sparse-step/hf")).configuration
        XCTAssertEqual(stepped.layerKinds.enumerated().filter { $0.element == .moe }.map(\.offset).allSatisfy { ($0 + 1) % 2 == 0 }, true)
    }
}
