import Foundation
import ModelFormats
import TestSupport
import XCTest

@testable import Tokenizer

final class TokenizerTests: XCTestCase {
    func gguf(_ name: String) throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: Fixtures.path("tokenizers/\(name)/tokenizer.gguf")))
    }
    func hf(_ name: String) throws -> Tokenizer {
        try Tokenizer(huggingFaceDirectory: Fixtures.path("tokenizers/\(name)/hf"))
    }

    static let streamingTexts = [
        "Emoji: 😀 🚀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ end",
        "你好，世界！日本語のテキスト。한국어 텍스트",
        "Combining: e\u{301} a\u{300} — مرحبا שלום नमस्ते",
        "🦙🦙🦙 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFD}",
    ]

    /// Token-by-token output equals the whole decode and never shows U+FFFD for valid text,
    /// for byte-level BPE (multi-byte characters split across tokens) and SentencePiece
    /// byte fallback (`<0xF0><0x9F>…`).
    func testStreamingDecodeEmitsOnlyCompleteCharacters() throws {
        let tokenizers = try [gguf("spm"), hf("spm"), gguf("qwen2"), hf("llama3"), gguf("gpt-oss"), gguf("deepseek-v3")]
        for tokenizer in tokenizers {
            for text in Self.streamingTexts {
                let ids = tokenizer.encode(text, addSpecialTokens: false)
                var decoder = tokenizer.streamingDecoder()
                var chunks: [String] = []
                var heldBack = 0
                for id in ids {
                    let chunk = decoder.append(id)
                    if chunk.isEmpty { heldBack += 1 }
                    XCTAssertFalse(chunk.unicodeScalars.contains("\u{FFFD}"), "\(tokenizer.source): U+FFFD mid-stream in \(text)")
                    chunks.append(chunk)
                }
                chunks.append(decoder.finish())
                XCTAssertEqual(chunks.joined(), tokenizer.decode(ids), tokenizer.source)
                XCTAssertEqual(chunks.joined(), text, tokenizer.source)
                XCTAssertGreaterThan(heldBack, 0, "\(tokenizer.source): expected some tokens to end inside a character")
            }
        }
    }

    func testStreamingDecoderFlushesIncompleteBytesAtFinish() throws {
        let tokenizer = try gguf("spm")
        let f0 = tokenizer.tokens.firstIndex(of: "<0xF0>")!
        var decoder = tokenizer.streamingDecoder()
        XCTAssertEqual(decoder.append(f0), "")
        XCTAssertEqual(decoder.finish(), "\u{FFFD}")
        XCTAssertEqual(tokenizer.decode([f0]), "\u{FFFD}")
    }

    func testSpecialTokenMetadata() throws {
        let qwen = try gguf("qwen2")
        XCTAssertNil(qwen.bosTokenId)
        XCTAssertEqual(qwen.eosTokenId.map { qwen.tokens[$0] }, "<|endoftext|>")
        XCTAssertEqual(qwen.prefixTokenIds, [])
        let imEnd = qwen.tokens.firstIndex(of: "<|im_end|>")!
        XCTAssertEqual(qwen.encode("<|im_end|>"), [imEnd])
        XCTAssertTrue(qwen.specialTokenIds.contains(imEnd))
        XCTAssertEqual(qwen.decode(qwen.encode("a<|im_end|>b", addSpecialTokens: false), skipSpecialTokens: true), "ab")

        for t in try [gguf("llama3"), hf("llama3")] {
            XCTAssertEqual(t.bosTokenId.map { t.tokens[$0] }, "<|begin_of_text|>")
            XCTAssertEqual(t.encode("hi").first, t.bosTokenId)
            XCTAssertNotEqual(t.encode("hi", addSpecialTokens: false).first, t.bosTokenId)
        }
        for t in try [gguf("spm"), hf("spm")] {
            XCTAssertEqual(t.bosTokenId, 1)
            XCTAssertEqual(t.eosTokenId, 2)
            XCTAssertEqual(t.unknownTokenId, 0)
            XCTAssertEqual(t.encode(""), [1])
            XCTAssertTrue(t.chatTemplate?.contains("[INST]") ?? false, t.source)
        }
        XCTAssertTrue(try hf("qwen2").chatTemplate?.contains("messages") ?? false)
        XCTAssertTrue(try gguf("qwen2").chatTemplate?.contains("messages") ?? false)
        XCTAssertEqual(try gguf("olmoe").vocabularySize, try hf("olmoe").vocabularySize)
    }

    func testPieceShowsDecodedText() throws {
        let t = try gguf("qwen2")
        let ids = t.encode(" world", addSpecialTokens: false)
        XCTAssertEqual(ids.map(t.piece).joined(), " world")
        XCTAssertEqual(t.piece(-1), "")
        XCTAssertEqual(t.piece(t.vocabularySize), "")
        XCTAssertEqual(t.decode([-5, 1_000_000]), "")
    }

    // MARK: - bad input

    func writeGGUF(_ metadata: [(String, GGUFValue)]) throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory()
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        for (k, v) in metadata { w.set(k, v) }
        try w.write(to: dir.path("t.gguf"))
        return (dir, dir.path("t.gguf"))
    }

    func assertTokenizerError(_ body: () throws -> Tokenizer, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error mentioning \(fragment)", file: file, line: line)
        } catch let error as TokenizerError {
            XCTAssertTrue(error.description.contains(fragment), error.description, file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), "the message is one line: \(error.description)", file: file, line: line)
        } catch {
            XCTFail("not a TokenizerError: \(error)", file: file, line: line)
        }
    }

    func testBadGGUFMetadataThrowsNamedErrors() throws {
        let strings = GGUFValue.array(.string, ["a", "b", "a b"].map { .string($0) })
        let cases: [([(String, GGUFValue)], String)] = [
            ([], "tokenizer.ggml.model is missing"),
            ([("tokenizer.ggml.model", .string("gpt2"))], "tokenizer.ggml.tokens is missing"),
            ([("tokenizer.ggml.model", .string("bert")), ("tokenizer.ggml.tokens", strings)], "\"bert\""),
            ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", strings),
              ("tokenizer.ggml.pre", .string("no-such-pre")), ("tokenizer.ggml.merges", .array(.string, []))], "no-such-pre"),
            // Found by fuzzing (vocab target): the name from the file was shown raw, a carriage return included.
            ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", strings),
              ("tokenizer.ggml.pre", .string("llama\rbpe")), ("tokenizer.ggml.merges", .array(.string, []))], #""llama\rbpe""#),
            ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", strings)], "tokenizer.ggml.merges is missing"),
            ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", strings),
              ("tokenizer.ggml.merges", .array(.string, [.string("nospace")]))], "entry 0"),
            ([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", strings)], "tokenizer.ggml.scores is missing"),
            ([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", strings),
              ("tokenizer.ggml.scores", .array(.float32, [.float32(0)]))], "1 scores for 3 tokens"),
            ([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .array(.int32, [.int32(1)]))], "element 0 is not a string"),
            ([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .array(.string, []))], "empty"),
            ([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", strings),
              ("tokenizer.ggml.scores", .array(.float32, [.float32(0), .float32(0), .float32(0)])),
              ("tokenizer.ggml.token_type", .array(.int32, [.int32(1)]))], "1 entries for 3 tokens"),
        ]
        for (metadata, fragment) in cases {
            let (dir, path) = try writeGGUF(metadata)
            assertTokenizerError({ try Tokenizer(gguf: GGUFFile(path: path)) }, contains: fragment)
            _ = dir
        }
        // Out-of-range special ids are ignored (as llama.cpp does), not trusted.
        let (dir, path) = try writeGGUF([
            ("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", strings),
            ("tokenizer.ggml.scores", .array(.float32, [.float32(0), .float32(0), .float32(1)])),
            ("tokenizer.ggml.bos_token_id", .uint32(99)), ("tokenizer.ggml.eos_token_id", .uint32(1_000_000)),
        ])
        let t = try Tokenizer(gguf: GGUFFile(path: path))
        XCTAssertEqual(t.bosTokenId, 1)  // llama.cpp's SPM default
        _ = t.encode("a b \u{1F600}")
        _ = dir
    }

    func testBadTokenizerJSONThrowsNamedErrors() throws {
        let cases: [(String, String)] = [
            ("not json", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            ("{}", "model is missing"),
            (#"{"model": {"type": "Unigram", "vocab": []}}"#, "Unigram"),
            (#"{"model": {"type": "BPE"}}"#, "model.vocab is missing"),
            (#"{"model": {"type": "BPE", "vocab": {"a": "x"}}}"#, "token \"a\" has no valid id"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}}"#, "model.merges[0]"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Whitespace"}}"#, "pre_tokenizer.type \"Whitespace\""),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}}"#, "pre-tokenizer regex"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "BertNormalizer"}}"#, "normalizer.type"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": -1, "content": "x"}]}"#, "added_tokens[0]"),
            // Found by fuzzing (tools/fuzz, target tokenizer): one damaged id made a table of a million tokens.
            (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 999230}}}"#, "ids reach 999230 but there are only 2 tokens"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 16777215, "content": "x"}]}"#, "ids reach 16777215"),
            // Names from the file are shown escaped and cut, on one line.
            (#"{"model": {"type": "BPE", "vocab": {"a\n"# + String(repeating: "b", count: 5000) + #"": "x"}}}"#, #"token "a\nbbbb"#),
            (#"{"model": {"type": "BPE", "vocab": {"a\n"# + String(repeating: "b", count: 5000) + #"": "x"}}}"#, "(4882 more characters)"),
            // Found by fuzzing (target tokenizer, 2026-12-01): a type name with a newline was quoted raw.
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prep\nd"}]}}"#,
             #"normalizer.normalizers[0].type "Prep\nd""#),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split", "pattern": {"String": "-"}, "behavior": "Iso\nlated"}}"#,
             #"Split behavior "Iso\nlated""#),
            (#"{"model": {"type": "B\nPE", "vocab": {"a": 0}}}"#, #"model.type "B\nPE""#),
        ]
        for (json, fragment) in cases {
            let dir = TemporaryDirectory()
            try Data(json.utf8).write(to: dir.url.appendingPathComponent("tokenizer.json"))
            assertTokenizerError({ try Tokenizer(huggingFaceDirectory: dir.url.path) }, contains: fragment)
        }
        assertTokenizerError({ try Tokenizer(huggingFaceDirectory: "/nonexistent-dir") }, contains: "cannot read")
    }

    func testSplitBehaviors() throws {
        let p = SplitPattern(literal: "-")
        func run(_ b: PreTokenizerStep.Behavior) -> [String] {
            PreTokenizerStep.split(p, b).apply(["a-b--c-"], atStart: true).map(String.init)
        }
        // expectations from HF tokenizers' Split(pattern="-", behavior=...)
        XCTAssertEqual(run(.isolated), ["a", "-", "b", "-", "-", "c", "-"])
        XCTAssertEqual(run(.removed), ["a", "b", "c"])
        XCTAssertEqual(run(.mergedWithPrevious), ["a-", "b-", "-", "c-"])
        XCTAssertEqual(run(.mergedWithNext), ["a", "-b", "-", "-c", "-"])
    }

    func testStableRangeRewriteKeepsTheSameScalars() throws {
        // U+1FD3 and U+212A change under NFC; Swift's regex parser refuses them as range bounds.
        let p = try SplitPattern(regex: "[\u{1FD0}-\u{1FD3}\u{212A}-\u{212D}]+", origin: "test")
        let text: Substring = "x\u{1FD0}\u{1FD3}\u{212A}\u{212D}y\u{0390}K"
        XCTAssertEqual(p.matches(in: text).map { String(text[$0]) }, ["\u{1FD0}\u{1FD3}\u{212A}\u{212D}"])
    }
}
