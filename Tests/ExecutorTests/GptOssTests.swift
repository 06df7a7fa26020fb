import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// GPT-OSS (tools/make_gptoss_fixtures.py): the HF directory (MXFP4 blocks + scales) and
/// llama.cpp's GGUF of it. Parity with transformers (1e-4, identical experts) is checked by
/// ParityTests, which picks the case up; this file checks what is particular to the family:
/// the ring KV cache of the sliding layers, the configuration both formats give, paging and
/// conversion.
final class GptOssTests: XCTestCase {
    let hf = Fixtures.path("gptoss/hf")
    let gguf = Fixtures.path("gptoss/model-mxfp4.gguf")

    func testBothFormatsDescribeTheSameModel() throws {
        let a = try ModelSource(path: hf).configuration, b = try ModelSource(path: gguf).configuration
        for c in [a, b] {
            XCTAssertEqual(c.architecture, .gptoss)
            XCTAssertEqual(c.slidingWindow, 8)
            XCTAssertEqual(c.slidingLayers, [true, false, true, false])
            XCTAssertTrue(c.attentionSinks && c.attentionOutputBias && c.expertBiases && c.attentionBias)
            XCTAssertEqual(c.expertActivation, .init(alpha: 1.702, limit: 7))
            XCTAssertEqual(c.expertsPerToken, 3)
            XCTAssertEqual(c.headDim, 24)
            XCTAssertEqual(c.ropeScaling?.kind, .yarn)
            XCTAssertEqual(c.ropeScaling?.factor, 4)
            XCTAssertEqual(c.ropeScaling?.originalContextLength, 64)
        }
        // The checkpoint says truncate: false; llama.cpp's YaRN always rounds (docs/design.md §2).
        XCTAssertEqual(a.ropeScaling?.truncate, false)
        XCTAssertEqual(b.ropeScaling?.truncate, true)
        // The HF experts are repacked, not requantized: the GGUF converter's bytes, exactly.
        let hfSource = try ModelSource(path: hf), ggufSource = try ModelSource(path: gguf)
        for (l, e) in [(0, 0), (1, 5), (3, 2)] {
            for (x, y) in zip(try hfSource.expertTensors(layer: l, expert: e), try ggufSource.expertTensors(layer: l, expert: e)) {
                XCTAssertEqual(x.type, .mxfp4)
                XCTAssertEqual(x.shape, y.shape)
                XCTAssertEqual(Array(x.data), Array(y.data), "layer \(l) expert \(e) \(y.name)")
            }
        }
    }

    /// One token at a time, in chunks, and all at once give the same logits (bit for bit) while
    /// the sliding layers' rings wrap several times (24 tokens, window 8).
    func testRingCacheDecodingEqualsFullSequence() throws {
        let tokens = try Fixtures.manifest("gptoss").sequences[2]
        XCTAssertGreaterThan(tokens.count, 2 * 8)
        for path in [hf, gguf] {
            for kv in KVCache.ElementType.allCases {
                let model = try Model(path: path, options: ExecutorOptions(threads: 2, kvCacheType: kv))
                let t = model.transformer
                let full = try t.forward(tokens: tokens, cache: t.makeCache())
                let stepped = t.makeCache()
                var steps: [Float] = []
                for token in tokens { steps += try t.forward(tokens: [token], cache: stepped) }
                XCTAssertTrue(steps == full, "\(path) \(kv): one at a time differs by \(maxAbsDifference(steps, full))")
                let chunked = t.makeCache()
                var chunks: [Float] = []
                for range in [0..<5, 5..<6, 6..<17, 17..<tokens.count] { chunks += try t.forward(tokens: Array(tokens[range]), cache: chunked) }
                XCTAssertTrue(chunks == full, "\(path) \(kv): chunks differ by \(maxAbsDifference(chunks, full))")
                // Decoding keeps a sliding layer at its window; full layers grow (64 slots at least).
                let row = 2 * model.configuration.kvDim * (kv == .f16 ? 2 : 4)
                XCTAssertEqual(stepped.byteCount, row * (2 * 64 + 2 * 8), "\(path) \(kv)")
            }
        }
    }

    /// A sliding layer forgets what left its window, so rewinding past it starts over.
    func testRewindPastTheWindowEmptiesTheCache() throws {
        let tokens = try Fixtures.manifest("gptoss").sequences[2]
        let model = try Model(path: gguf, options: ExecutorOptions(threads: 2))
        let t = model.transformer
        func decoded() throws -> KVCache {
            let cache = t.makeCache()
            for token in tokens { _ = try t.forward(tokens: [token], cache: cache) }
            return cache
        }
        // Decoding leaves the sliding layers holding positions 16..<24 (window 8).
        let cache = try decoded()
        cache.truncate(to: 23)  // needs 16..<23: still held
        XCTAssertEqual(cache.count, 23)
        let next = try t.forward(tokens: [tokens[23]], cache: cache)
        let fresh = t.makeCache()
        let all = try t.forward(tokens: tokens, cache: fresh)
        XCTAssertTrue(next == Array(all.suffix(model.configuration.vocabSize)))
        let other = try decoded()
        other.truncate(to: 22)  // needs position 15, overwritten
        XCTAssertEqual(other.count, 0)
        // From an empty cache the logits are those of a fresh run.
        let again = try t.forward(tokens: Array(tokens.prefix(5)), cache: other)
        XCTAssertTrue(again == (try t.forward(tokens: Array(tokens.prefix(5)), cache: t.makeCache())))
    }

    func testMemoryPlanCountsOnlyTheWindowOfSlidingLayers() throws {
        let c = try ModelSource(path: gguf).configuration
        let planned = KVCache.plannedBytes(kvDim: c.kvDim, elementSize: 2, maxPositions: 256, chunk: 16, windows: c.cacheWindows)
        XCTAssertEqual(planned, 2 * c.kvDim * 2 * (2 * 256 + 2 * (8 + 16 - 1)))
    }

    /// Experts paged through a pool of one layer's active experts (GGUF and a `.moe` store
    /// converted from it, MXFP4 kept) give the resident model's logits bit for bit.
    func testPagingAndConversionKeepMXFP4AndTheLogits() throws {
        let tokens = try Fixtures.manifest("gptoss").sequences[2]
        let resident = try Model(path: gguf, options: ExecutorOptions(threads: 2))
        let expected = try resident.transformer.forward(tokens: tokens, cache: resident.transformer.makeCache())
        let paged = try Model(path: gguf, options: ExecutorOptions(threads: 2), memory: .init(expertCache: .minimum))
        XCTAssertTrue(try paged.transformer.forward(tokens: tokens, cache: paged.transformer.makeCache()) == expected)
        XCTAssertGreaterThan(try XCTUnwrap(paged.pagedExperts).metrics.misses, 0)

        let dir = TemporaryDirectory()
        for input in [gguf, hf] {
            let out = dir.path("\((input as NSString).lastPathComponent).moe")
            _ = try Converter.convert(input: input, output: out, options: .init(compression: .none))
            let store = try ModelSource(path: out)
            XCTAssertEqual(store.configuration.architecture, .gptoss)
            XCTAssertTrue(try store.tensorInventory.filter { $0.name.contains("exps.weight") }.allSatisfy { $0.type == .mxfp4 })
            let model = try Model(path: out, options: ExecutorOptions(threads: 2), memory: .init(expertCache: .minimum))
            let logits = try model.transformer.forward(tokens: tokens, cache: model.transformer.makeCache())
            if input == gguf {
                XCTAssertTrue(logits == expected, "store from GGUF: \(maxAbsDifference(logits, expected))")
            } else {
                let direct = try Model(path: hf, options: ExecutorOptions(threads: 2))
                XCTAssertTrue(logits == (try direct.transformer.forward(tokens: tokens, cache: direct.transformer.makeCache())), "store from HF")
            }
        }
    }

    /// The HF directory's experts are repacked in memory, so they cannot be paged from it:
    /// a clear error that says what to do instead.
    func testPagingTheHFDirectoryItselfSaysToConvert() throws {
        XCTAssertThrowsError(try Model(path: hf, options: ExecutorOptions(threads: 2), memory: .init(expertCache: .minimum))) { error in
            XCTAssertTrue("\(error)".contains("cannot be paged from this directory") && "\(error)".contains("moe convert keeps MXFP4"), "\(error)")
        }
    }

    func testInspectShowsTheFamilySettings() throws {
        let text = try ModelInspection(source: ModelSource(path: hf)).text
        for line in ["architecture gptoss", "sliding layers [0, 2] (file: layer_types)", "rope type yarn (file: rope_scaling.rope_type)",
                     "rope truncate false (file: rope_scaling.truncate)", "swiglu limit 7 (default of GptOssConfig)"] {
            XCTAssertTrue(text.contains(line), "inspect lacks \(line):\n\(text)")
        }
    }
}
