import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// Logits and routing against Hugging Face transformers, for every fixture case and file.
///
/// Each model file is compared with transformers run in f32 on exactly the weights that file
/// holds (tools/make_fixtures.py dequantizes GGUF F16/Q8_0 tensors with gguf-py and loads them
/// back into the HF model), so one tolerance serves every storage type: 1e-4 max-abs on the
/// logits, identical expert ids in the same order, router weights within 1e-5. How far each
/// type's own rounding moves the logits from the F32 model is in each manifest
/// (`max_abs_vs_f32`), measured by transformers, and is not what these tests check.
final class ParityTests: XCTestCase {
    static let logitTolerance: Float = 1e-4
    /// The exact path: f32 activations and KV cache.
    static let exact = ExecutorOptions(threads: 2, kernels: .reference, kvCacheType: .f32)
    static let weightTolerance: Float = 1e-5

    func testFixturesExist() {
        XCTAssertTrue(Fixtures.cases.contains("mixtral"), "fixtures missing: run tools/make_fixtures.py")
        XCTAssertGreaterThanOrEqual(Fixtures.cases.count, 4)
    }

    func testEveryFamilyAndFormatMatchesTransformers() throws {
        var compared = 0
        for name in Fixtures.cases {
            let manifest = try Fixtures.manifest(name)
            for entry in manifest.models {
                guard let reference = manifest.references[entry.reference] else {
                    XCTFail("\(name): no reference \(entry.reference)")
                    continue
                }
                let model = try Model(path: Fixtures.path("\(name)/\(entry.path)"), options: Self.exact)
                compared += try assertMatchesReference(model, case: name, manifest: manifest, reference: reference, label: "\(name)/\(entry.path)")
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 30)
    }

    /// Incremental decoding with the KV cache gives bit-identical logits to the whole sequence.
    func testIncrementalDecodingEqualsFullSequence() throws {
        for name in Fixtures.cases {
            let manifest = try Fixtures.manifest(name)
            let tokens = manifest.sequences.max { $0.count < $1.count }!
            for entry in manifest.models where entry.dtype == "f32" || entry.dtype == "q8_0" {
                let model = try Model(path: Fixtures.path("\(name)/\(entry.path)"))
                let t = model.transformer
                let full = try t.forward(tokens: tokens, cache: t.makeCache())

                let oneByOne = t.makeCache()
                var stepped: [Float] = []
                for token in tokens { stepped += try t.forward(tokens: [token], cache: oneByOne) }
                XCTAssertTrue(stepped == full, "\(name)/\(entry.path): one token at a time differs by \(maxAbsDifference(stepped, full))")

                let chunked = t.makeCache()
                var chunks: [Float] = []
                for range in [0..<5, 5..<6, 6..<tokens.count] {
                    chunks += try t.forward(tokens: Array(tokens[range]), cache: chunked)
                }
                XCTAssertTrue(chunks == full, "\(name)/\(entry.path): chunks of 5, 1, rest differ by \(maxAbsDifference(chunks, full))")
                XCTAssertEqual(oneByOne.count, tokens.count)
            }
        }
    }

    func testGreedyGenerationFollowsReferenceArgmax() throws {
        let manifest = try Fixtures.manifest("qwen3moe")
        let model = try Model(path: Fixtures.path("qwen3moe/model-f32.gguf"))
        let tokens = manifest.sequences[1]
        let reference = try NPY.read(path: Fixtures.path("qwen3moe/\(manifest.references["f32"]!.logits[1])"))
        let vocab = model.configuration.vocabSize
        let lastRow = Array(reference.values[(tokens.count - 1) * vocab..<(tokens.count * vocab)])
        let generated = try model.generate(tokens: tokens, maxNewTokens: 6)
        XCTAssertEqual(generated.count, 6)
        XCTAssertEqual(generated.first, Model.argmax(lastRow))
        // Each further token is the argmax of evaluating the extended sequence from scratch.
        let extended = try model.logits(tokens: tokens + generated.dropLast())
        for (i, token) in generated.enumerated() {
            XCTAssertEqual(token, Model.argmax(extended[tokens.count - 1 + i]), "generated token \(i)")
        }
    }
}

extension XCTestCase {
    /// Compares `model` with transformers' reference logits and router choices on every sequence
    /// of the case (``ParityTests`` tolerances); returns how many sequences were compared.
    func assertMatchesReference(_ model: Model, case name: String, manifest: Fixtures.Manifest,
                                reference: Fixtures.Manifest.Reference, label prefix: String) throws -> Int {
        let recorded = try Fixtures.experts(name, reference)
        for (s, tokens) in manifest.sequences.enumerated() {
            let label = "\(prefix) sequence \(s) (\(tokens.count) tokens)"
            let (logits, routing) = try model.evaluate(tokens: tokens)
            let expected = try NPY.read(path: Fixtures.path("\(name)/\(reference.logits[s])"))
            XCTAssertEqual(expected.shape, [tokens.count, model.configuration.vocabSize], label)
            let diff = maxAbsDifference(Array(logits.joined()), expected.values)
            XCTAssertLessThanOrEqual(diff, ParityTests.logitTolerance, "\(label): logits differ by \(diff)")
            compareRouting(routing, recorded[s], label: label)
        }
        return manifest.sequences.count
    }

    func compareRouting(_ ours: [[[ExpertChoice]]], _ theirs: [[RecordedChoice]?], label: String) {
        XCTAssertEqual(ours.count, theirs.count, "\(label): layer count")
        for (l, layer) in theirs.enumerated() where l < ours.count {
            guard let layer else {
                XCTAssertTrue(ours[l].isEmpty, "\(label): layer \(l) is dense in transformers but routed here")
                continue
            }
            XCTAssertEqual(ours[l].count, layer.count, "\(label): layer \(l) token count")
            for (t, choice) in layer.enumerated() where t < ours[l].count {
                XCTAssertEqual(ours[l][t].map(\.expert), choice.ids, "\(label): layer \(l) token \(t) experts")
                for (a, b) in zip(ours[l][t].map(\.weight), choice.weights) {
                    XCTAssertEqual(a, b, accuracy: ParityTests.weightTolerance, "\(label): layer \(l) token \(t) weights")
                }
            }
        }
    }
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    var worst: Float = 0
    for i in a.indices {
        let d = abs(a[i] - b[i])
        if d.isNaN { return .nan }
        worst = max(worst, d)
    }
    return worst
}

typealias RecordedChoice = Fixtures.RecordedChoice
