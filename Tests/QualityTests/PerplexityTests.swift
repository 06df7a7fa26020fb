import Foundation
import Conversion
import Executor
import ExpertStore
import ModelFormats
import Quantization
import Quality
import Router
import Runtime
import Tokenizer
import TestSupport
import XCTest

/// `Model.perplexity` against transformers on the same tokens and windows
/// (tools/make_perplexity_fixture.py).
final class PerplexityTests: XCTestCase {
    struct Reference: Decodable {
        struct Result: Decodable {
            let context: Int
            let stride: Int?
            let scored: Int
            let mean_nll: Double
            let perplexity: Double
        }
        let text: String
        let tokens: [Int]
        let bos: Int?
        let results: [String: Result]
    }

    func testMatchesTransformersWithBothMethods() throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("perplexity/reference.json")))
        let path = Fixtures.path("qwen3moe/hf")
        // Our tokenizer gives the same ids as transformers' on this text.
        XCTAssertEqual(try Tokenizer(path: path).encode(reference.text), reference.tokens)
        for kernels in [KernelPath.reference, .fast] {
            let model = try Model(path: path, options: ExecutorOptions(threads: 2, kernels: kernels, kvCacheType: kernels == .reference ? .f32 : .f16))
            for (name, method) in [("llamacpp", Model.PerplexityMethod.llamaCpp), ("sliding", .slidingWindow(stride: 32))] {
                let expected = try XCTUnwrap(reference.results[name])
                let ours = try model.perplexity(tokens: reference.tokens, context: expected.context, method: method, bos: reference.bos)
                XCTAssertEqual(ours.scoredTokens, expected.scored, name)
                // Within 0.5% (the bar); the exact path is far closer.
                XCTAssertEqual(ours.perplexity, expected.perplexity, accuracy: expected.perplexity * (kernels == .reference ? 1e-4 : 5e-3), "\(name) \(kernels)")
                XCTAssertGreaterThan(ours.standardError, 0)
            }
        }
    }

    func testKLDivergenceIsZeroAgainstItselfAndSmallForQ8() throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("perplexity/reference.json")))
        let f32 = try Model(path: Fixtures.path("qwen3moe/model-f32.gguf"), options: ExecutorOptions(threads: 2))
        let q8 = try Model(path: Fixtures.path("qwen3moe/model-q8_0.gguf"), options: ExecutorOptions(threads: 2))
        let same = try f32.klDivergence(from: f32, tokens: reference.tokens, context: 64, bos: nil)
        XCTAssertEqual(same.meanKLD, 0, accuracy: 1e-9)
        XCTAssertEqual(same.top1Agreement, 1)
        XCTAssertEqual(same.perplexity, same.basePerplexity, accuracy: 1e-9)
        let quantized = try q8.klDivergence(from: f32, tokens: reference.tokens, context: 64, bos: nil)
        XCTAssertGreaterThan(quantized.meanKLD, 0)
        XCTAssertLessThan(quantized.meanKLD, 0.05)
        XCTAssertGreaterThan(quantized.top1Agreement, 0.8)
        XCTAssertEqual(quantized.scoredTokens, same.scoredTokens)
        // The paired NLL difference: zero against itself; otherwise the log of the two
        // perplexities' ratio, with a standard error above zero.
        XCTAssertEqual(same.meanDeltaNLL, 0, accuracy: 1e-12)
        XCTAssertEqual(same.deltaNLLStandardError, 0, accuracy: 1e-12)
        XCTAssertEqual(quantized.meanDeltaNLL, log(quantized.perplexity / quantized.basePerplexity), accuracy: 1e-9)
        XCTAssertGreaterThan(quantized.deltaNLLStandardError, 0)
    }
}
