import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// The fast path (8-bit activations for block-quantized weights as llama.cpp does them, f16 KV
/// cache) against transformers on the same weights, with llama.cpp's own logits on the same
/// GGUF files as the yardstick (recorded by tools/make_llamacpp_logits.py).
///
/// - F32/F16/BF16 weights keep f32 activations; only the f16 KV cache rounds: every position
///   within 2e-3 of the largest |logit|.
/// - Q8_0 and MXFP4 (GPT-OSS): activations are rounded to 1/254 of their 32-block maximum, and a router near-tie
///   can flip an expert, which moves that position's logits a lot (llama.cpp shows the same).
///   So the bar is statistical: the median over positions of |Δlogit| / max|logit| is at most
///   1.5× llama.cpp's on the same file and sequences, and at least 95% of (token, layer)
///   expert choices equal transformers'.
final class FastPathTests: XCTestCase {
    func testFastPathIsAsCloseToTransformersAsLlamaCpp() throws {
        var report: [String] = []
        for name in Fixtures.cases {
            let manifest = try Fixtures.manifest(name)
            let llamacpp = try? JSONDecoder().decode(LlamaCppRecord.self, from: Data(contentsOf: Fixtures.root.appendingPathComponent("\(name)/llamacpp.json")))
            for entry in manifest.models {
                let reference = manifest.references[entry.reference]!
                let recorded = try Fixtures.experts(name, reference)
                let model = try Model(path: Fixtures.path("\(name)/\(entry.path)"), options: ExecutorOptions(threads: 2))
                var ours: [Float] = [], theirs: [Float] = []
                var slots = 0, agreeing = 0
                for (s, tokens) in manifest.sequences.enumerated() {
                    let expected = try NPY.read(path: Fixtures.path("\(name)/\(reference.logits[s])"))
                    let (logits, routing) = try model.evaluate(tokens: tokens)
                    let range = expected.values.map(abs).max() ?? 1
                    let vocab = model.configuration.vocabSize
                    for t in tokens.indices {
                        let row = Array(expected.values[(t * vocab)..<((t + 1) * vocab)])
                        ours.append(maxAbsDifference(logits[t], row) / range)
                    }
                    if let files = llamacpp?.files[entry.path] {
                        let peer = try NPY.read(path: Fixtures.path("\(name)/\(files[s])"))
                        for t in tokens.indices {
                            let row = Array(expected.values[(t * vocab)..<((t + 1) * vocab)])
                            theirs.append(maxAbsDifference(Array(peer.values[(t * vocab)..<((t + 1) * vocab)]), row) / range)
                        }
                    }
                    for (l, layer) in recorded[s].enumerated() {
                        guard let layer else { continue }
                        for (t, choice) in layer.enumerated() {
                            slots += 1
                            if Set(routing[l][t].map(\.expert)) == Set(choice.ids) { agreeing += 1 }
                        }
                    }
                }
                let label = "\(name)/\(entry.path)"
                let agreement = Double(agreeing) / Double(max(slots, 1))
                if entry.dtype == "mxfp4", llamacpp?.files[entry.path] == nil {
                    // An HF MXFP4 directory has no llama.cpp run of its own (its GGUF has, with
                    // llama.cpp's YaRN rounding); its exact path is checked by ParityTests.
                    continue
                }
                if let refusal = llamacpp?.unloadable?[entry.path] {
                    report.append("\(label): llama.cpp refuses it (\(refusal)); experts \(String(format: "%.1f%%", 100 * agreement))")
                    XCTAssertGreaterThanOrEqual(agreement, 0.95, "\(label): expert choices")
                } else if entry.dtype == "q8_0" || entry.dtype == "mxfp4" {
                    let peer = median(theirs)
                    XCTAssertFalse(theirs.isEmpty, "\(label): no llama.cpp logits; run tools/make_llamacpp_logits.py")
                    XCTAssertLessThanOrEqual(median(ours), 1.5 * peer, "\(label): median relative error vs llama.cpp's")
                    XCTAssertGreaterThanOrEqual(agreement, 0.95, "\(label): expert choices")
                    report.append(String(format: "%@ median %.2e (llama.cpp %.2e) max %.2e (llama.cpp %.2e) experts %.1f%%",
                                         label, median(ours), peer, ours.max() ?? 0, theirs.max() ?? 0, 100 * agreement))
                } else {
                    XCTAssertLessThanOrEqual(ours.max() ?? .infinity, 2e-3, "\(label): float weights")
                    XCTAssertEqual(agreement, 1, "\(label): expert choices")
                    report.append(String(format: "%@ max %.2e%@", label, ours.max() ?? 0, theirs.isEmpty ? "" : String(format: " (llama.cpp %.2e)", theirs.max() ?? 0)))
                }
            }
        }
        print("fast path |Δlogit| / max|logit| vs transformers:\n  " + report.joined(separator: "\n  "))
    }

    struct LlamaCppRecord: Decodable {
        let version: String
        let files: [String: [String]]
        /// Files llama.cpp refuses to load (nothing to compare with), and its message.
        let unloadable: [String: String]?
    }

    func median(_ values: [Float]) -> Float {
        guard !values.isEmpty else { return .infinity }
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
