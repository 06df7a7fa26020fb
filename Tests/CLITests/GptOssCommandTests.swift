import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// The commands that run every family, on the tiny GPT-OSS GGUF (tools/make_gptoss_fixtures.py):
/// paging under `--memory`/`--expert-cache`, `perplexity`, `trace`, `calibrate` with MXFP4
/// among the planner's types, `convert --target-size`, and `tune`.
final class GptOssCommandTests: XCTestCase {
    let gguf = Fixtures.path("gptoss/model-mxfp4.gguf")

    func text(in dir: TemporaryDirectory) throws -> String {
        let path = dir.path("text.txt")
        try String(repeating: "def f(x):\n    return x + 1\n# Hello, world! 123 tokens\n", count: 12).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testGenerateUnderAMemoryBudgetEqualsResident() throws {
        let plain = try Fixtures.runMoe(["generate", gguf, "--tokens", "5,17,200,33", "--max-new", "12", "--threads", "2"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        for flags in [["--expert-cache", "min"], ["--memory", "400MB", "--expert-cache", "min"]] {
            let paged = try Fixtures.runMoe(["generate", gguf, "--tokens", "5,17,200,33", "--max-new", "12", "--threads", "2"] + flags)
            XCTAssertEqual(paged.status, 0, paged.stderr)
            XCTAssertEqual(paged.stdout, plain.stdout, "\(flags)")
        }
    }

    func testPerplexityAndTrace() throws {
        let dir = TemporaryDirectory()
        let text = try text(in: dir)
        let ppl = try Fixtures.runMoe(["perplexity", gguf, "--text", text, "--ctx-size", "32", "--json", "--threads", "2"])
        XCTAssertEqual(ppl.status, 0, ppl.stderr)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(ppl.stdout.utf8)) as? [String: Any])
        let value = try XCTUnwrap(result["perplexity"] as? Double)
        XCTAssertTrue(value.isFinite && value > 1, "\(value)")

        let trace = try Fixtures.runMoe(["trace", gguf, "--text", text, "--tokens", "40", "--ctx-size", "32", "--threads", "2", "-o", dir.path("t.trace")])
        XCTAssertEqual(trace.status, 0, trace.stderr)
        let steps = try TraceCodec.read(path: dir.path("t.trace")).steps
        XCTAssertEqual(steps.count, 40)
        XCTAssertEqual(steps.last?.layers.count, 4)
    }

    /// calibrate measures MXFP4 next to Q8_0; a target size between the two all-one-type stores
    /// gives a store within it whose experts are planned among those types, MXFP4 included.
    func testCalibrateAndPlanWithMXFP4AsACandidate() throws {
        let dir = TemporaryDirectory()
        let text = try text(in: dir)
        let calibration = dir.path("cal.json")
        let calibrate = try Fixtures.runMoe(["calibrate", gguf, "--text", text, "-o", calibration, "--ctx-size", "32", "--sensitivity-windows", "1",
                                             "--types", "mxfp4,q8_0", "--threads", "2"])
        XCTAssertEqual(calibrate.status, 0, calibrate.stderr)
        let file = try CalibrationFile.load(path: calibration)
        XCTAssertEqual(file.sensitivity?.measurements.count, 4 * 6 * 2)
        XCTAssertEqual(file.sensitivity?.measurements.filter { $0.type == "mxfp4" }.count, 4 * 6)
        let source = try ModelSource(path: gguf)
        let small = try Converter.storeSize(source: source, plan: BitPlan(default: "mxfp4"), calibration: file.routing)
        let large = try Converter.storeSize(source: source, plan: BitPlan(default: "q8_0"), calibration: file.routing)
        XCTAssertLessThan(small, large)
        let out = dir.path("planned.moe")
        let convert = try Fixtures.runMoe(["convert", gguf, "-o", out, "--target-size", "\((small + large) / 2)", "--calibration", calibration, "--compression", "none"])
        XCTAssertEqual(convert.status, 0, convert.stderr)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
        XCTAssertLessThanOrEqual(size, (small + large) / 2)
        let types = Set(try ModelSource(path: out).tensorInventory.filter { $0.name.contains("exps.weight") }.map(\.type))
        XCTAssertTrue(types.isSubset(of: [.mxfp4, .q8_0]) && types.contains(.mxfp4), "\(types)")
        let run = try Fixtures.runMoe(["generate", out, "--tokens", "5,17", "--max-new", "4", "--expert-cache", "min"])
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    func testTuneRecommendsAPoolAndVerifiesIt() throws {
        let manifest = try Fixtures.manifest("gptoss")
        let tokens = Array((manifest.sequences[2] + manifest.sequences[1] + manifest.sequences[2]).prefix(48))
        var options = TuneOptions(budget: nil, executor: ExecutorOptions(threads: 2), memory: .init(maxContext: 32))
        options.prefetchKinds = [.none]
        options.window = 16
        options.tokens = tokens.count
        options.verifyTokens = 8
        let result = try Model.tune(path: gguf, text: tokens, source: "test", options: options)
        XCTAssertEqual(result.totalExperts, 4 * 6)
        XCTAssertFalse(result.points.isEmpty)
        XCTAssertTrue(result.recommendation.point.withinBudget)
    }
}
