import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// Defaults that depend on the model follow it: on a model whose context is 256 tokens, commands
/// whose windows default to 512 use 256 (`moe trace --text` used to fail: "the context would hold
/// 512 positions, more than its limit of 256"), and a window given explicitly that does not fit is
/// an error naming the flag.
final class ModelDefaultsTests: XCTestCase {
    static let contextLength = 256

    /// The Qwen3-MoE fixture with `max_position_embeddings` lowered to 256 (weights and tokenizer linked).
    func shortContextModel(in dir: TemporaryDirectory) throws -> String {
        let original = Fixtures.root.appendingPathComponent("qwen3moe/hf")
        let model = dir.url.appendingPathComponent("short")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: original.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(at: model.appendingPathComponent(name), withDestinationURL: original.appendingPathComponent(name))
        }
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: original.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertGreaterThan(config["max_position_embeddings"] as? Int ?? 0, 512, "the original must be longer than the default window")
        config["max_position_embeddings"] = Self.contextLength
        try JSONSerialization.data(withJSONObject: config).write(to: model.appendingPathComponent("config.json"))
        XCTAssertEqual(try ModelSource(path: model.path).configuration.contextLength, Self.contextLength)
        return model.path
    }

    /// A text of about 1,300 tokens: more than two default windows.
    func longText(in dir: TemporaryDirectory) throws -> String {
        let path = dir.path("text.txt")
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 130).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testTraceTextWindowsFollowAShortContext() throws {
        let dir = TemporaryDirectory()
        let model = try shortContextModel(in: dir), text = try longText(in: dir)
        let r = try Fixtures.runMoe(["trace", model, "--text", text, "--tokens", "600", "--threads", "2", "-o", dir.path("t.trace")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let trace = try TraceCodec.read(path: dir.path("t.trace"))
        XCTAssertEqual(trace.steps.count, 600)
        // Decode steps restart at position 0 in each window: windows of the whole 256-token context.
        XCTAssertEqual(trace.steps.map(\.position).max(), Self.contextLength - 1)
        XCTAssertEqual(trace.steps.filter { $0.position == 0 }.count, 3)  // 600 = 256 + 256 + 88

        let tooLong = try Fixtures.runMoe(["trace", model, "--text", text, "--ctx-size", "512", "-o", dir.path("u.trace")])
        XCTAssertEqual(tooLong.status, 1)
        XCTAssertTrue(tooLong.stderr.contains("--ctx-size 512 is longer than the 256 positions"), tooLong.stderr)
        // A prompt trace without --max-tokens generates what the context leaves room for.
        // (The fixture's tokenizer makes 15 tokens of this prompt, so 9 of the default 64 fit in 24 positions.)
        let prompt = try Fixtures.runMoe(["trace", model, "--prompt", "The quick brown fox", "--context", "24", "-o", dir.path("p.trace")])
        XCTAssertEqual(prompt.status, 0, prompt.stderr)
        let steps = try TraceCodec.read(path: dir.path("p.trace")).steps
        XCTAssertEqual(steps.first?.tokens.count, 15)
        XCTAssertEqual(steps.map { $0.tokens.count }.reduce(0, +), 24)
    }

    func testPerplexityAndKLDWindowsFollowAShortContext() throws {
        let dir = TemporaryDirectory()
        let model = try shortContextModel(in: dir), text = try longText(in: dir)
        let ppl = try Fixtures.runMoe(["perplexity", model, "--text", text, "--chunks", "2", "--json", "--threads", "2"])
        XCTAssertEqual(ppl.status, 0, ppl.stderr)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(ppl.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(result["context"] as? Int, Self.contextLength)
        XCTAssertEqual(result["windows"] as? Int, 2)

        let kld = try Fixtures.runMoe(["kld", model, "--base", model, "--text", text, "--chunks", "1", "--json", "--threads", "2"])
        XCTAssertEqual(kld.status, 0, kld.stderr)
        let divergence = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(kld.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(divergence["scoredTokens"] as? Int, Self.contextLength / 2 - 1)  // the second half of one chunk, as llama.cpp

        for arguments in [["perplexity", model, "--text", text, "--ctx-size", "300"], ["calibrate", model, "--text", text, "--ctx-size", "300", "--no-sensitivity", "-o", dir.path("c.json")]] {
            let r = try Fixtures.runMoe(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments)")
            XCTAssertTrue(r.stderr.contains("--ctx-size 300 is longer than the 256 positions"), r.stderr)
        }
        let stride = try Fixtures.runMoe(["perplexity", model, "--text", text, "--stride", "300"])
        XCTAssertEqual(stride.status, 1)
        XCTAssertTrue(stride.stderr.contains("--stride 300 is longer than the 256-token windows"), stride.stderr)
    }

    func testBenchAndGenerateFitAShortContext() throws {
        let dir = TemporaryDirectory()
        let model = try shortContextModel(in: dir)
        // 128 + 32 tokens do not fit 100 positions: the defaults shrink to fit.
        let bench = try Fixtures.runMoe(["bench", model, "--context", "100", "--repetitions", "1", "--json", "--threads", "2"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any])
        let prompt = try XCTUnwrap(result["prompt_tokens"] as? Int), gen = try XCTUnwrap(result["gen_tokens"] as? Int)
        XCTAssertEqual(prompt + gen, 99)
        XCTAssertGreaterThan(gen, 0)

        let generate = try Fixtures.runMoe(["generate", model, "--tokens", "1,2,3", "--context", "8"])
        XCTAssertEqual(generate.status, 0, generate.stderr)
        XCTAssertEqual(generate.stdout.split(separator: ",").count, 5)  // 16 by default, 5 fit after 3 prompt tokens
    }
}
