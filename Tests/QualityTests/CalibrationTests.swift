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

/// Sensitivity calibration and bit planning on the tiny Qwen3-MoE fixture (2 layers × 8 experts).
final class CalibrationTests: XCTestCase {
    let input = Fixtures.path("qwen3moe/hf")
    let types = ["q4_0", "q8_0"]

    func windows(_ model: Model, count: Int = 2, context: Int = 48) throws -> [[Int]] {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        let tokens = try XCTUnwrap(reference?["tokens"] as? [Int])
        return QualityProbe.windows(of: tokens, context: context, count: count, bos: nil)
    }

    func settings(_ model: Model, windows: [[Int]]) throws -> SensitivityTable.Settings {
        SensitivityTable.Settings(model: input, modelFingerprint: try model.source.expertFingerprint(), text: "zen", tokensHash: "0",
                                  context: windows[0].count, windows: windows.count, types: types)
    }

    struct Interrupted: Error {}

    /// Two runs give identical tables, and a run interrupted part-way and resumed from what it
    /// saved gives the same table as one that never stopped.
    func testSensitivityIsDeterministicAndResumable() throws {
        let model = try Model(path: input, options: ExecutorOptions(threads: 2))
        let w = try windows(model)
        let s = try settings(model, windows: w)
        let first = try model.measureSensitivity(windows: w, settings: s, save: { _ in })
        let second = try model.measureSensitivity(windows: w, settings: s, save: { _ in })
        XCTAssertEqual(first, second)
        XCTAssertEqual(first.measurements.count, 2 * 8 * types.count)
        XCTAssertTrue(first.isComplete(experts: 16))

        // What lowering does, checked independently of the table: a routed expert at q4_0
        // moves the distributions; q8_0 moves them less on average; an expert never routed
        // in these windows cannot change anything.
        let probe = try QualityProbe(model: model, windows: w)
        let routed = Set(probe.routedWindows.keys)
        for m in first.measurements {
            let key = ExpertKey(layer: m.layer, expert: m.expert)
            if routed.contains(key) {
                XCTAssertGreaterThan(m.kld, 0, "\(key) at \(m.type)")
            } else {
                XCTAssertEqual(m.kld, 0)
                XCTAssertEqual(m.deltaNLL, 0)
            }
        }
        func mean(_ t: String) -> Double { first.measurements.filter { $0.type == t }.map(\.kld).reduce(0, +) }
        XCTAssertLessThan(mean("q8_0"), mean("q4_0"))

        // Interrupt after 5 new measurements (the save callback fails), then resume.
        var saved: SensitivityTable? = nil
        var calls = 0
        XCTAssertThrowsError(try model.measureSensitivity(windows: w, settings: s, saveInterval: 0, save: { table in
            saved = table
            calls += 1
            if calls == 5 { throw Interrupted() }
        }))
        let partial = try XCTUnwrap(saved)
        XCTAssertEqual(partial.measurements.count, 5)
        var resumedNow = 0
        let resumed = try model.measureSensitivity(windows: w, settings: s, resume: partial, save: { _ in }) { p in resumedNow = p.measuredNow }
        XCTAssertEqual(resumed, first)
        XCTAssertEqual(resumedNow, first.measurements.count - 5, "the resumed run measures only what was missing")

        // Resuming a table taken with other settings is refused.
        var other = s
        other.types = ["q8_0"]
        XCTAssertThrowsError(try model.measureSensitivity(windows: w, settings: other, resume: partial, save: { _ in }))
    }

    /// The probe's KL divergence against an independent computation from full logits.
    func testProbeDriftMatchesDirectComputation() throws {
        let model = try Model(path: input, options: ExecutorOptions(threads: 2))
        let w = try windows(model, count: 1)
        let probe = try QualityProbe(model: model, windows: w)
        let key = try XCTUnwrap(probe.routedWindows.keys.sorted { ($0.layer, $0.expert) < ($1.layer, $1.expert) }.first)
        let replacement = try model.transformer.experts.withExpert(layer: key.layer, expert: key.expert) { try RequantizedExpert($0, to: .q4_0) }
        let drift = try probe.drift([key: replacement])

        // The same model with that expert lowered, evaluated through a separate transformer.
        let overlay = ExpertOverlay(base: try ResidentExpertStore(source: model.source))
        overlay.set([key: replacement])
        let lowered = try Transformer(source: model.source, experts: overlay, options: ExecutorOptions(threads: 1))
        let base = try Transformer(source: model.source, options: ExecutorOptions(threads: 1))
        let v = model.configuration.vocabSize
        let p = try base.forward(tokens: w[0], cache: base.makeCache(maxPositions: w[0].count))
        let q = try lowered.forward(tokens: w[0], cache: lowered.makeCache(maxPositions: w[0].count))
        var kld = 0.0, delta = 0.0
        for position in 0..<(w[0].count - 1) {
            let a = p[(position * v)..<((position + 1) * v)].map(Double.init), b = q[(position * v)..<((position + 1) * v)].map(Double.init)
            let la = log(a.map { exp($0 - a.max()!) }.reduce(0, +)) + a.max()!
            let lb = log(b.map { exp($0 - b.max()!) }.reduce(0, +)) + b.max()!
            for i in 0..<v { kld += exp(a[i] - la) * ((a[i] - la) - (b[i] - lb)) }
            let target = w[0][position + 1]
            delta += (lb - b[target]) - (la - a[target])
        }
        let n = Double(w[0].count - 1)
        XCTAssertEqual(drift.kld, kld / n, accuracy: 1e-6 + 1e-3 * kld / n)
        XCTAssertEqual(drift.deltaNLL, delta / n, accuracy: 1e-5)
        XCTAssertGreaterThan(drift.kld, 0)
    }

    /// calibrate → convert --target-size → convert --bit-plan with the written plan, through the CLI.
    func testCalibrateThenPlanThroughTheCommandLine() throws {
        let dir = TemporaryDirectory()
        let text = dir.path("text.txt")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        try XCTUnwrap(reference?["text"] as? String).write(toFile: text, atomically: true, encoding: .utf8)
        let calibration = dir.path("cal.json")
        let calibrate = try runMoe(["calibrate", input, "--text", text, "-o", calibration, "--ctx-size", "48", "--sensitivity-windows", "2",
                                    "--types", types.joined(separator: ","), "--threads", "2"])
        XCTAssertEqual(calibrate.status, 0, calibrate.stderr)
        let file = try CalibrationFile.load(path: calibration)
        XCTAssertEqual(file.sensitivity?.measurements.count, 2 * 8 * 2)
        // The same file still serves --prefetch path.
        XCTAssertEqual(try TransitionTable.load(path: calibration), file.routing)

        let source = try ModelSource(path: input)
        // The stores embed the calibration's routing statistics, which count toward the size.
        let smallest = try Converter.storeSize(source: source, plan: BitPlan(default: "q4_0"), calibration: file.routing)
        let largest = try Converter.storeSize(source: source, plan: BitPlan(default: "keep"), calibration: file.routing)
        for (i, target) in [smallest, (smallest + largest) / 2, smallest + (largest - smallest) / 5].enumerated() {
            for planner in ["knapsack", "edgemoe"] {
                let out = dir.path("p\(i)-\(planner).moe")
                let r = try runMoe(["convert", input, "-o", out, "--target-size", "\(target)", "--calibration", calibration, "--planner", planner, "--compression", "none"])
                XCTAssertEqual(r.status, 0, r.stderr)
                let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
                XCTAssertLessThanOrEqual(size, target, "\(planner) at \(target)")
                // The written plan converts to the same store.
                let plan = dir.path("p\(i)-\(planner).plan.json")
                let again = dir.path("again.moe")
                let r2 = try runMoe(["convert", input, "-o", again, "--bit-plan", plan, "--compression", "none", "--calibration", calibration])
                XCTAssertEqual(r2.status, 0, r2.stderr)
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: again)), try Data(contentsOf: URL(fileURLWithPath: out)))
            }
        }
        // Below the smallest possible store: a clear error, and no output.
        let r = try runMoe(["convert", input, "-o", dir.path("tiny.moe"), "--target-size", "\(smallest - 4096)", "--calibration", calibration])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("smallest store"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path("tiny.moe")))
        // Without sensitivities: says what to run.
        let routingOnly = dir.path("routing.json")
        XCTAssertEqual(try runMoe(["calibrate", input, "--text", text, "-o", routingOnly, "--ctx-size", "48", "--no-sensitivity"]).status, 0)
        let r3 = try runMoe(["convert", input, "-o", dir.path("x.moe"), "--target-size", "\(largest)", "--calibration", routingOnly])
        XCTAssertEqual(r3.status, 1)
        XCTAssertTrue(r3.stderr.contains("moe calibrate"), r3.stderr)
    }

    /// --max-ppl-increase: the plan's measured increase on the calibration text is within the limit.
    func testPerplexityTargetIsMetOnTheCalibrationText() throws {
        let dir = TemporaryDirectory()
        let text = dir.path("text.txt")
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("perplexity/reference.json")))) as? [String: Any]
        try XCTUnwrap(reference?["text"] as? String).write(toFile: text, atomically: true, encoding: .utf8)
        let calibration = dir.path("cal.json")
        XCTAssertEqual(try runMoe(["calibrate", input, "--text", text, "-o", calibration, "--ctx-size", "48", "--sensitivity-windows", "2",
                                   "--types", types.joined(separator: ",")]).status, 0)
        let r = try runMoe(["convert", input, "-o", dir.path("p.moe"), "--max-ppl-increase", "0.5%", "--calibration", calibration, "--plan-only", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let outcome = try JSONDecoder().decode(BitPlanning.Outcome.self, from: Data(r.stdout.utf8))
        let increase = try XCTUnwrap(outcome.measuredPerplexityIncrease)
        XCTAssertLessThanOrEqual(increase, 0.005)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path("p.moe")), "--plan-only writes no store")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path("p.plan.json")))
    }

    /// The knapsack's frequency-weighted loss: per-use damage times use rate, with experts the
    /// sensitivity windows barely saw pulled toward their layer's damage per use.
    func testFrequencyWeightedLossUsesRoutingFrequency() throws {
        let source = try ModelSource(path: input)
        var routing = TransitionTable(layers: [0, 1], expertCount: 8)
        routing.tokens = 1000
        // Layer 0: experts 0 and 1 equally damaging per use, expert 1 used 4x as often overall;
        // expert 2 never seen in the windows but routed 100 times in the routing pass.
        routing.frequency = [[100, 400, 100, 0, 0, 0, 0, 0], [250, 250, 250, 250, 0, 0, 0, 0]]
        var table = SensitivityTable(settings: .init(model: input, modelFingerprint: try source.expertFingerprint(), text: "t", tokensHash: "0",
                                                     context: 11, windows: 10, types: ["q4_0"]),
                                     baseNLL: 1, scoredTokens: 100, sourceTypes: ["f32", "f32", "f32"])
        table.activations = [[50, 50, 0, 0, 0, 0, 0, 0], [25, 25, 25, 25, 0, 0, 0, 0]]
        for l in 0..<2 {
            for e in 0..<8 {
                let uses = Double(table.activations?[l][e] ?? 0)
                table.measurements.append(.init(layer: l, expert: e, type: "q4_0", kld: uses * 1e-4 / 100, deltaNLL: 0))
            }
        }
        let file = CalibrationFile(routing: routing, sensitivity: table)
        func loss(_ experts: [BitPlanner.Expert], _ l: Int, _ e: Int) -> Double {
            experts.first { $0.key == ExpertKey(layer: l, expert: e) }?.options.first { $0.type == "q4_0" }?.loss ?? -1
        }
        let measured = try BitPlanning.options(source: source, calibration: file, path: "t", loss: .measured)
        XCTAssertEqual(loss(measured, 0, 0), 0.5e-4, accuracy: 1e-12)
        XCTAssertEqual(loss(measured, 0, 2), 0)
        // Every option of a float source also offers "keep" at no loss.
        XCTAssertEqual(measured[0].options.map(\.type), ["q4_0", "keep"])
        let weighted = try BitPlanning.options(source: source, calibration: file, path: "t", loss: .frequencyWeighted(priorUses: 32))
        // Same damage per use (1e-4 nats summed per use): loss proportional to routing frequency.
        XCTAssertEqual(loss(weighted, 0, 1) / loss(weighted, 0, 0), 400.5 / 100.5, accuracy: 1e-9)
        XCTAssertEqual(loss(weighted, 0, 0), 1e-4 * 100.5 / 1000, accuracy: 1e-12)
        // Unseen in the windows but routed: the layer's damage per use, not zero.
        XCTAssertEqual(loss(weighted, 0, 2), 1e-4 * 100.5 / 1000, accuracy: 1e-12)
        // Never routed anywhere: only the half-use smoothing remains.
        XCTAssertEqual(loss(weighted, 0, 3), 1e-4 * 0.5 / 1000, accuracy: 1e-12)
        // Older calibrations without activation counts are refused with what to do.
        var old = file
        old.sensitivity?.activations = nil
        XCTAssertThrowsError(try BitPlanning.options(source: source, calibration: old, path: "t", loss: .standard)) {
            XCTAssertTrue("\($0)".contains("rerun the same moe calibrate"))
        }
    }

    /// A store whose embedded path statistics have the right layers but tables of the wrong
    /// shape is refused when a run would use them, like the same statistics in a file.
    func testDamagedEmbeddedCalibrationIsAnError() throws {
        let dir = TemporaryDirectory()
        let out = dir.path("bad.moe")
        var table = TransitionTable(layers: [0, 1], expertCount: 8)
        table.frequency = [[1]]
        _ = try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: "q8_0"), compression: .none, calibration: table))
        XCTAssertThrowsError(try Model(path: out, memory: .init(prefetch: .path))) { error in
            guard case let .invalidCalibration(path, reason) = error as? PredictorError else { return XCTFail("\(error)") }
            XCTAssertTrue(path.contains("calibration section"), path)
            XCTAssertTrue(reason.contains("do not match"), reason)
        }
        // The sound statistics of the same store still load.
        let good = dir.path("good.moe")
        _ = try Converter.convert(input: input, output: good, options: .init(plan: BitPlan(default: "q8_0"), compression: .none,
                                                                             calibration: TransitionTable(layers: [0, 1], expertCount: 8)))
        XCTAssertNoThrow(try Model(path: good, memory: .init(prefetch: .path)))
    }

    func runMoe(_ arguments: [String]) throws -> MoeRun { try Fixtures.runMoe(arguments) }
}
