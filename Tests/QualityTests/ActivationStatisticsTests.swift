import Foundation
import Executor
import ExpertStore
import ModelFormats
import Quality
import Router
import Runtime
import TestSupport
import XCTest

/// `moe calibrate`'s one-pass activation statistics and the proxy sensitivities, on the tiny
/// Qwen3-MoE fixture (2 layers × 8 experts, hidden 64, expert FFN 32).
final class ActivationStatisticsTests: XCTestCase {
    let input = Fixtures.path("qwen3moe/hf")

    struct Reference: Decodable {
        let tokens: Int
        let window: Int
        let uses: [[Int]]
        let routerWeightSquares: [[Double]]
        let inputSquares: [[[Double]]]
        let hiddenSquares: [[[Double]]]
        let upGain: [[[Double]]]
        let gateGain: [[[Double]]]
    }

    func tokens(_ count: Int) throws -> [Int] {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        return Array(try XCTUnwrap(reference?["tokens"] as? [Int]).prefix(count))
    }

    func settings(_ model: Model, tokens: [Int], window: Int) throws -> ActivationStatistics.Settings {
        ActivationStatistics.Settings(model: input, modelFingerprint: try model.source.expertFingerprint(), text: "zen",
                                      tokensHash: SensitivityTable.Settings.tokensHash(of: [tokens]), totalTokens: tokens.count, context: window)
    }

    /// The gathered statistics equal transformers' (tools/make_activation_fixture.py) on the same windows.
    func testStatisticsMatchTransformers() throws {
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("activations/qwen3moe.json"))))
        let model = try Model(path: input, options: ExecutorOptions(threads: 2, kernels: .reference, kvCacheType: .f32))
        let t = try tokens(ref.tokens)
        let (routing, stats) = try model.gatherActivations(tokens: t, settings: try settings(model, tokens: t, window: ref.window), save: { _, _ in })
        XCTAssertEqual(stats.uses, ref.uses)
        XCTAssertEqual(routing.frequency, ref.uses)
        XCTAssertTrue(stats.isComplete)
        func close(_ got: [Float], _ want: [[[Double]]], _ name: String) {
            let flat = want.flatMap { $0.flatMap { $0 } }
            XCTAssertEqual(got.count, flat.count, name)
            for (i, (g, w)) in zip(got, flat).enumerated() where abs(Double(g) - w) > 1e-4 * max(1, abs(w)) {
                return XCTFail("\(name)[\(i)]: \(g) vs transformers' \(w)")
            }
        }
        close(stats.inputSquares, ref.inputSquares, "inputSquares")
        close(stats.hiddenSquares, ref.hiddenSquares, "hiddenSquares")
        close(stats.upGain, ref.upGain, "upGain")
        close(stats.gateGain, ref.gateGain, "gateGain")
        close(stats.routerWeightSquares.flatMap { $0 }, [ref.routerWeightSquares], "routerWeightSquares")
    }

    struct Interrupted: Error {}

    /// Interrupted after a window and resumed from the saved file: the same bits as one run,
    /// and the file round-trips exactly.
    func testResumedGatheringEqualsOneRunAndRoundTrips() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("c.json")
        let model = try Model(path: input, options: ExecutorOptions(threads: 2))
        let t = try tokens(200)
        let s = try settings(model, tokens: t, window: 32)
        let whole = try model.gatherActivations(tokens: t, settings: s, save: { _, _ in })
        var saves = 0
        XCTAssertThrowsError(try model.gatherActivations(tokens: t, settings: s, saveInterval: 0, save: { routing, stats in
            try CalibrationFile(routing: routing, activations: stats).write(to: path)
            saves += 1
            if saves == 3 { throw Interrupted() }
        }))
        let saved = try CalibrationFile.load(path: path)
        let partial = try XCTUnwrap(saved.activations)
        XCTAssertEqual(partial.tokens, 96)
        XCTAssertFalse(partial.isComplete)
        let resumed = try model.gatherActivations(tokens: t, settings: s, resume: (saved.routing, partial), save: { _, _ in })
        XCTAssertEqual(resumed.0, whole.0)
        XCTAssertEqual(resumed.1, whole.1)
        try CalibrationFile(routing: whole.0, activations: whole.1).write(to: path)
        XCTAssertEqual(try CalibrationFile.load(path: path).activations, whole.1)
        // Other settings are refused.
        var other = s
        other.context = 16
        XCTAssertThrowsError(try model.gatherActivations(tokens: t, settings: other, resume: (saved.routing, partial), save: { _, _ in }))
    }

    /// A damaged or malformed activations object is refused with a reason, never a crash.
    func testMalformedActivationsAreRefused() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("c.json")
        let model = try Model(path: input, options: ExecutorOptions(threads: 2))
        let t = try tokens(64)
        let (routing, stats) = try model.gatherActivations(tokens: t, settings: try settings(model, tokens: t, window: 32), save: { _, _ in })
        try CalibrationFile(routing: routing, activations: stats).write(to: path)
        let good = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        func refused(_ edit: (inout [String: Any]) -> Void, _ expected: String, line: UInt = #line) throws {
            var object = good
            var a = try XCTUnwrap(object["activations"] as? [String: Any])
            edit(&a)
            object["activations"] = a
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try CalibrationFile.load(path: path), line: line) { error in
                guard case let .invalidCalibration(_, reason) = error as? PredictorError else { return XCTFail("\(error)", line: line) }
                XCTAssertTrue(reason.contains(expected), reason, line: line)
            }
        }
        try refused({ a in
            var data = Data(base64Encoded: a["inputSquares"] as? String ?? "") ?? Data()
            data[5] ^= 0x40
            a["inputSquares"] = data.base64EncodedString()
        }, "checksum")
        try refused({ $0["upGain"] = "not base64!" }, "upGain")
        try refused({ $0["hiddenSize"] = 65 }, "inputSquares")
        try refused({ $0["format"] = "imatrix\u{1B}[31m" }, "is not swiftmoe-activations")
        try refused({ $0["uses"] = [[1, 2]] }, "uses")
        try refused({ $0["layers"] = [0] }, "do not match")
        try refused({ $0["tokens"] = -1 }, "out of range")
        try refused({ $0["hiddenSize"] = "wide" }, "not valid")
        try Data("{\"format\": \"swiftmoe-calibration\", \"activations\": [".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try CalibrationFile.load(path: path))
    }

    /// Proxy losses: zero for experts never routed, never negative, and larger for coarser types.
    func testProxyLossesOrderTypes() throws {
        let model = try Model(path: input, options: ExecutorOptions(threads: 2))
        let t = try tokens(96)
        let (_, stats) = try model.gatherActivations(tokens: t, settings: try settings(model, tokens: t, window: 48), save: { _, _ in })
        let s = SensitivityTable.Settings(model: input, modelFingerprint: try model.source.expertFingerprint(), text: "zen", tokensHash: "0",
                                          context: 48, windows: 1, types: ["q4_0", "q5_0", "q8_0"])
        let table = try model.proxySensitivity(statistics: stats, settings: s, save: { _ in })
        XCTAssertTrue(table.isProxy)
        XCTAssertEqual(table.measurements.count, 2 * 8 * 3)
        XCTAssertEqual(table.activations, stats.uses)
        let byKey = table.byKey
        for l in 0..<2 {
            for e in 0..<8 {
                let q4 = try XCTUnwrap(byKey[SensitivityTable.key(l, e, "q4_0")]).kld
                let q5 = try XCTUnwrap(byKey[SensitivityTable.key(l, e, "q5_0")]).kld
                let q8 = try XCTUnwrap(byKey[SensitivityTable.key(l, e, "q8_0")]).kld
                if stats.uses[l][e] == 0 {
                    XCTAssertEqual([q4, q5, q8], [0, 0, 0])
                } else {
                    XCTAssertGreaterThan(q4, q5, "layer \(l) expert \(e)")
                    XCTAssertGreaterThan(q5, q8, "layer \(l) expert \(e)")
                    XCTAssertGreaterThan(q8, 0)
                }
            }
        }
        // Deterministic.
        XCTAssertEqual(try model.proxySensitivity(statistics: stats, settings: s, save: { _ in }), table)
    }

    /// moe calibrate (proxy by default) then moe convert --target-size, activation-aware by default.
    func testCalibrateProxyThenPlanThroughTheCommandLine() throws {
        let dir = TemporaryDirectory()
        let text = dir.path("text.txt")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        try XCTUnwrap(reference?["text"] as? String).write(toFile: text, atomically: true, encoding: .utf8)
        let calibration = dir.path("c.json")
        let run = try Fixtures.runMoe(["calibrate", input, "--text", text, "-o", calibration, "--ctx-size", "48", "--types", "q4_0,q8_0", "--sensitivity-windows", "2"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("proxy sensitivity"), run.stdout)
        let file = try CalibrationFile.load(path: calibration)
        XCTAssertTrue(try XCTUnwrap(file.sensitivity).isProxy)
        XCTAssertTrue(try XCTUnwrap(file.activations).isComplete)
        let uniform = try Fixtures.runMoe(["convert", input, "-o", dir.path("u.moe"), "--bits", "q4_0", "--imatrix", calibration])
        XCTAssertEqual(uniform.status, 0, uniform.stderr)
        XCTAssertTrue(uniform.stderr.contains("activation-aware"), uniform.stderr)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dir.path("u.moe"))[.size] as? Int)
        let planned = try Fixtures.runMoe(["convert", input, "-o", dir.path("p.moe"), "--target-size", "\(size + 20_000)", "--calibration", calibration])
        XCTAssertEqual(planned.status, 0, planned.stderr)
        let both = try Fixtures.runMoe(["convert", input, "-o", dir.path("x.moe"), "--imatrix", calibration, "--no-imatrix"])
        XCTAssertNotEqual(both.status, 0)
    }
}
