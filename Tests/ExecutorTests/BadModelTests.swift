import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// Damaged or mismatched models are refused with a typed error naming what and where.
final class BadModelTests: XCTestCase {
    let fixture = Fixtures.path("qwen3moe/model-f32.gguf")

    func edited(_ edit: (inout GGUFWriter) -> Void) throws -> (TemporaryDirectory, String) {
        var writer = GGUFWriter(copying: try GGUFFile(path: fixture))
        edit(&writer)
        let dir = TemporaryDirectory()
        let path = dir.path("edited.gguf")
        try writer.write(to: path)
        return (dir, path)
    }

    func assertModelError(_ path: String, file: StaticString = #filePath, line: UInt = #line, _ check: (ModelFormatError) -> Bool) {
        XCTAssertThrowsError(try Model(path: path), file: file, line: line) { error in
            guard let e = error as? ModelFormatError else { return XCTFail("untyped: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "unexpected: \(e)", file: file, line: line)
        }
    }

    func testUnchangedCopyStillLoads() throws {
        let (dir, path) = try edited { _ in }
        defer { _ = dir }
        let a = try Model(path: path).logits(tokens: [1, 2, 3])
        let b = try Model(path: fixture).logits(tokens: [1, 2, 3])
        XCTAssertEqual(a, b)
    }

    func testMissingTensor() throws {
        let (dir, path) = try edited { $0.tensors.removeAll { $0.name == "blk.1.attn_k.weight" } }
        defer { _ = dir }
        assertModelError(path) { if case let .missingTensor(name, model) = $0 { return name == "blk.1.attn_k.weight" && model == path } else { return false } }

        let (dir2, path2) = try edited { $0.tensors.removeAll { $0.name == "blk.0.ffn_up_exps.weight" } }
        defer { _ = dir2 }
        assertModelError(path2) { if case let .missingTensor(name, _) = $0 { return name.contains("blk.0.ffn_up_exps.weight") } else { return false } }
    }

    func testShapeMismatch() throws {
        // Claim a different FFN size than the expert tensors have.
        let (dir, path) = try edited { $0.set("qwen3moe.expert_feed_forward_length", .uint32(48)) }
        defer { _ = dir }
        assertModelError(path) { if case let .shapeMismatch(tensor, expected, found) = $0 { return tensor.contains("exps") && expected != found } else { return false } }

        // A tensor whose stored shape disagrees with the configuration.
        let (dir2, path2) = try edited { w in
            let i = w.tensors.firstIndex { $0.name == "blk.0.attn_q_norm.weight" }!
            w.tensors[i].shape = [w.tensors[i].shape[0] / 2, 2]
        }
        defer { _ = dir2 }
        assertModelError(path2) { if case let .shapeMismatch(tensor, _, _) = $0 { return tensor == "blk.0.attn_q_norm.weight" } else { return false } }
    }

    func testUnknownArchitectureAndMissingKeys() throws {
        let (dir, path) = try edited { $0.set("general.architecture", .string("gpt9")) }
        defer { _ = dir }
        assertModelError(path) { if case let .unknownArchitecture(name, known) = $0 { return name == "gpt9" && known.contains("qwen3moe") } else { return false } }

        let (dir2, path2) = try edited { $0.remove(key: "qwen3moe.embedding_length") }
        defer { _ = dir2 }
        assertModelError(path2) { if case let .invalidMetadata(_, key, _) = $0 { return key == "qwen3moe.embedding_length" } else { return false } }

        let (dir3, path3) = try edited { $0.set("qwen3moe.block_count", .string("two")) }
        defer { _ = dir3 }
        assertModelError(path3) { if case let .invalidMetadata(_, key, _) = $0 { return key == "qwen3moe.block_count" } else { return false } }

        // Keys llama.cpp requires, RoPE scaling SwiftMoE does not compute (not approximated), and
        // YaRN without its factor.
        for (key, edit) in [("qwen3moe.context_length", { (w: inout GGUFWriter) in w.remove(key: "qwen3moe.context_length") }),
                            ("qwen3moe.attention.layer_norm_rms_epsilon", { w in w.remove(key: "qwen3moe.attention.layer_norm_rms_epsilon") }),
                            ("qwen3moe.rope.scaling.type", { w in w.set("qwen3moe.rope.scaling.type", .string("longrope")) }),
                            ("qwen3moe.rope.scaling.factor", { w in w.set("qwen3moe.rope.scaling.type", .string("yarn")) })] {
            let (dir, path) = try edited(edit)
            defer { _ = dir }
            assertModelError(path) { if case let .invalidMetadata(p, k, _) = $0 { return p == path && k == key } else { return false } }
        }
    }

    func testAbsurdConfiguration() throws {
        for (key, value) in [("qwen3moe.block_count", GGUFValue.uint64(1 << 40)), ("qwen3moe.attention.head_count", .uint32(0)),
                             ("qwen3moe.expert_used_count", .uint32(1000)), ("qwen3moe.attention.head_count_kv", .uint32(5))] {
            let (dir, path) = try edited { $0.set(key, value) }
            defer { _ = dir }
            assertModelError(path) { if case let .invalidConfig(p, _) = $0 { return p == path } else { return false } }
        }
    }

    func testUnsupportedTensorType() throws {
        let (dir, path) = try edited { w in
            let i = w.tensors.firstIndex { $0.name == "blk.0.attn_v.weight" }!
            // Same byte count as f32 rows of 64 would need in another type is irrelevant: the type is refused first.
            w.tensors[i].type = .iq1_s  // no dequantizer in this build
            w.tensors[i].shape = [256, w.tensors[i].shape[1] * 64 / 256]
            w.tensors[i].data = Data(count: w.tensors[i].shape[1] * 50)
        }
        defer { _ = dir }
        assertModelError(path) { if case .shapeMismatch = $0 { return true } else if case .unsupportedType = $0 { return true } else { return false } }
    }

    func testTokenOutOfRangeAndContextLimit() throws {
        let model = try Model(path: fixture)
        let vocab = model.configuration.vocabSize
        XCTAssertThrowsError(try model.logits(tokens: [1, vocab])) { error in
            XCTAssertEqual(error as? ExecutorError, .tokenOutOfRange(token: vocab, position: 1, vocabSize: vocab))
        }
        XCTAssertThrowsError(try model.logits(tokens: [])) { XCTAssertEqual($0 as? ExecutorError, .emptyInput) }
        let cache = model.transformer.makeCache(maxPositions: 4)
        _ = try model.transformer.forward(tokens: [1, 2, 3], cache: cache)
        XCTAssertThrowsError(try model.transformer.forward(tokens: [4, 5], cache: cache)) { error in
            XCTAssertEqual(error as? ExecutorError, .contextFull(needed: 5, limit: 4))
        }
        XCTAssertEqual(cache.count, 3, "a refused call leaves the cache as it was")
    }
}
