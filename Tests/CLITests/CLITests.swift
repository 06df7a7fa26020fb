import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// Runs the built `moe` binary as a user would and checks what it prints and writes.
final class CLITests: XCTestCase {
    typealias Result = MoeRun

    func run(_ arguments: [String]) throws -> Result { try Fixtures.runMoe(arguments) }

    func testInspectDescribesConverterGGUF() throws {
        let path = Fixtures.path("qwen2moe/model-q8_0.gguf")
        let r = try run(["inspect", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("architecture qwen2moe"), r.stdout)
        XCTAssertTrue(r.stdout.contains("shared expert"), r.stdout)

        let json = try run(["inspect", path, "--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let report = try JSONDecoder().decode(ModelInspection.self, from: Data(json.stdout.utf8))
        // Expected values computed here from the file's own tensor table, independently of inspect.
        let file = try GGUFFile(path: path)
        let meta = file.metadata
        XCTAssertEqual(report.layers, meta["qwen2moe.block_count"]?.int)
        XCTAssertEqual(report.expertsPerLayer, meta["qwen2moe.expert_count"]?.int)
        XCTAssertEqual(report.expertsPerToken, meta["qwen2moe.expert_used_count"]?.int)
        XCTAssertTrue(report.sharedExpert)
        let expertTensors = file.tensors.filter { $0.name.hasSuffix("_exps.weight") }
        XCTAssertEqual(report.expertBytes, expertTensors.reduce(0) { $0 + $1.byteCount })
        XCTAssertEqual(report.totalBytes, file.tensors.reduce(0) { $0 + $1.byteCount })
        XCTAssertEqual(report.denseBytes, report.totalBytes - report.expertBytes)
        let layer0 = expertTensors.filter { $0.name.hasPrefix("blk.0.") }
        XCTAssertEqual(report.bytesPerExpert[0], layer0.reduce(0) { $0 + $1.byteCount } / report.expertsPerLayer)
        XCTAssertEqual(Set(report.tensorTypes.map(\.type)), Set(file.tensors.map { $0.type.description }))
    }

    func testLogitsWritesNPYAndRoutingMatchingTransformers() throws {
        let manifest = try Fixtures.manifest("olmoe")
        let tokens = manifest.sequences[1]
        let dir = TemporaryDirectory()
        let r = try run(["logits", Fixtures.path("olmoe/model-f32.gguf"), "--tokens", tokens.map(String.init).joined(separator: ","),
                         "--out", dir.path("l.npy"), "--experts-out", dir.path("e.json"), "--kernels", "reference", "--kv-cache", "f32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = try NPY.read(path: dir.path("l.npy"))
        let reference = try NPY.read(path: Fixtures.path("olmoe/\(manifest.references["f32"]!.logits[1])"))
        XCTAssertEqual(ours.shape, reference.shape)
        let worst = zip(ours.values, reference.values).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-4)

        struct Routing: Decodable { let routing: [[[ExpertChoice]]] }
        let routing = try JSONDecoder().decode(Routing.self, from: Data(contentsOf: dir.url.appendingPathComponent("e.json"))).routing
        let recorded = try Fixtures.experts("olmoe", manifest.references["f32"]!)[1]
        for (l, layer) in recorded.enumerated() {
            XCTAssertEqual(routing[l].map { $0.map(\.expert) }, layer?.map(\.ids))
        }
    }

    func testGenerateMatchesLibrary() throws {
        let path = Fixtures.path("mixtral/model-q8_0.gguf")
        let r = try run(["generate", path, "--tokens", "5,17,42", "--max-new", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try Model(path: path).generate(tokens: [5, 17, 42], maxNewTokens: 5)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), expected.map(String.init).joined(separator: ","))
    }

    func testBadInputGivesOneLineErrorNotACrash() throws {
        let dir = TemporaryDirectory()
        try Data("GGML garbage".utf8).write(to: dir.url.appendingPathComponent("bad.gguf"))
        let model = Fixtures.path("mixtral/model-q8_0.gguf")
        // Files a run refuses must not pass inspect: a tensor with a zero dimension, and the
        // output matrix with its dimensions swapped (same bytes, wrong shape).
        let original = try GGUFFile(path: model)
        var zero = GGUFWriter(copying: original), swapped = GGUFWriter(copying: original)
        let norm = try XCTUnwrap(zero.tensors.firstIndex { $0.name == "blk.0.attn_norm.weight" })
        zero.tensors[norm].shape = [0]
        zero.tensors[norm].data = Data()
        let output = try XCTUnwrap(swapped.tensors.firstIndex { $0.name == "output.weight" })
        swapped.tensors[output].shape.reverse()
        try zero.write(to: dir.path("zero-dim.gguf"))
        try swapped.write(to: dir.path("swapped.gguf"))
        let cases: [([String], String)] = [
            (["inspect", dir.path("zero-dim.gguf")], "blk.0.attn_norm.weight"),
            (["logits", dir.path("zero-dim.gguf"), "--tokens", "1,2"], "blk.0.attn_norm.weight"),
            (["inspect", dir.path("swapped.gguf")], "output.weight"),
            (["logits", dir.path("swapped.gguf"), "--tokens", "1,2"], "output.weight"),
            (["inspect", dir.path("missing.gguf")], "no such file"),
            (["inspect", dir.path("bad.gguf")], "wrong magic"),
            (["logits", model, "--tokens", "1,x,3"], "--tokens"),
            (["logits", model, "--tokens", "1,99999"], "outside the vocabulary"),
            (["generate", model, "--tokens", "1", "--max-new", "0"], "--max-new"),
            (["inspect", Fixtures.root.path], "config.json"),
        ]
        for (arguments, message) in cases {
            let r = try run(arguments)
            XCTAssertNotEqual(r.status, 0, "\(arguments)")
            XCTAssertTrue(r.exited, "\(arguments) should exit with an error status, not die of a signal")
            XCTAssertTrue(r.stderr.contains(message), "\(arguments): stderr was \(r.stderr)")
        }
    }

    /// What a user sees for an option nobody defines: ArgumentParser's message, the usage line and
    /// a usage exit status (`moe run --bogus` used to say "expected [MODEL] PROMPT, got 0").
    func testUnknownOptionIsReportedWithUsage() throws {
        let model = Fixtures.path("mixtral/model-q8_0.gguf")
        for arguments in [["run", "--bogus"], ["run", model, "hello", "--bogus"], ["trace", model, "--text", "t", "-o", "x", "--bogus"]] {
            let r = try run(arguments)
            XCTAssertTrue(r.exited)
            XCTAssertEqual(r.status, 64, "\(arguments): EX_USAGE, like every other usage error")
            XCTAssertTrue(r.stderr.hasPrefix("Error: Unknown option '--bogus'\n"), "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("Usage: moe \(arguments[0])"), "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty)
        }
        // A prompt starting with "-" goes after "--".
        let dashed = try run(["run", model, "--max-tokens", "2", "--no-chat", "--seed", "1", "--", "-1 is"])
        XCTAssertEqual(dashed.status, 0, dashed.stderr)
        XCTAssertTrue(dashed.stderr.contains("2 generated"), dashed.stderr)
    }

    func testTokenizePrintsPiecesAndIdsMatchingTheLibrary() throws {
        let text = "Hello <|im_end|> 你好"
        for path in [Fixtures.path("tokenizers/qwen2/tokenizer.gguf"), Fixtures.path("tokenizers/qwen2/hf")] {
            let expected = try Tokenizer(path: path).encode(text)
            let ids = try run(["tokenize", path, text, "--ids"])
            XCTAssertEqual(ids.status, 0, ids.stderr)
            XCTAssertEqual(ids.stdout.trimmingCharacters(in: .whitespacesAndNewlines), expected.map(String.init).joined(separator: ","))

            let listing = try run(["tokenize", path, text])
            XCTAssertEqual(listing.status, 0, listing.stderr)
            let lines = listing.stdout.split(separator: "\n")
            XCTAssertEqual(lines.last, "\(expected.count) tokens")
            XCTAssertEqual(lines.dropLast().map { Int($0.split(separator: "\t")[0]) }, expected)
            XCTAssertTrue(listing.stdout.contains("\"<|im_end|>\""), listing.stdout)
            XCTAssertTrue(listing.stdout.contains("<0xE4>"), listing.stdout)  // a partial character shown as bytes
        }
        let bad = try run(["tokenize", Fixtures.path("tokenizers/missing.gguf"), "x"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.hasPrefix("error: "), bad.stderr)
    }

    /// A Mixtral-style directory with tokenizer.model and no tokenizer.json: `moe tokenize` gives
    /// transformers' ids (recorded in model-mixtral.json) and `moe inspect` says which file the
    /// tokenizer came from; with a tokenizer.json whose vocabulary differs, it says which was used.
    func testTokenizerModelOnlyDirectory() throws {
        let dir = TemporaryDirectory()
        let hf = try dir.copy(fixture: "mixtral/hf", to: "hf", excluding: ["tokenizer.json"])
        let cases = try RecordedTokenizerCases.load("model-mixtral")
        let sample = try XCTUnwrap(cases.first { $0.text == "Hello, world! How are you today?" })
        let ids = try run(["tokenize", hf.path, sample.text, "--ids"])
        XCTAssertEqual(ids.status, 0, ids.stderr)
        XCTAssertEqual(ids.stdout.trimmingCharacters(in: .whitespacesAndNewlines), sample.ids.map(String.init).joined(separator: ","))

        let inspect = try run(["inspect", hf.path])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("tokenizer    tokenizer.model (no tokenizer.json"), inspect.stdout)
        XCTAssertFalse(inspect.stdout.contains("note:"), inspect.stdout)

        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("tokenizers/spm/hf/tokenizer.json"),
                                         to: hf.appendingPathComponent("tokenizer.json"))
        let both = try run(["inspect", hf.path, "--json"])
        XCTAssertEqual(both.status, 0, both.stderr)
        let report = try JSONDecoder().decode(ModelInspection.self, from: Data(both.stdout.utf8))
        XCTAssertEqual(report.tokenizer?.origin, "tokenizer.json")
        XCTAssertEqual(report.tokenizer?.notes.count, 1)
        XCTAssertTrue(report.tokenizer?.notes.first?.contains("used tokenizer.json") == true, "\(report.tokenizer as Any)")
    }
}
