import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// The commands that run every family, on the tiny DeepSeek-V3 (sigmoid routing, MLA) and
/// GLM-4.5 fixtures, both with one shared expert and a dense first layer (3 layers, 8 routed
/// experts): paging under `--memory`/`--expert-cache`, the paged store's catalog, `trace`,
/// `calibrate` (proxy sensitivity) with `convert --target-size`, and `tune` (issue #15).
final class DeepSeekCommandTests: XCTestCase {
    struct Case {
        var name: String
        var k: Int
        var gguf: String { Fixtures.path("\(name)/model-q8_0.gguf") }
    }
    let cases = [Case(name: "deepseek-v3", k: 3), Case(name: "glm4moe", k: 2)]
    let moeLayers = [1, 2]
    let experts = 8

    func text(in dir: TemporaryDirectory) throws -> String {
        let path = dir.path("text.txt")
        try String(repeating: "def f(x):\n    return x + 1\n# Hello, world! 123 tokens\n", count: 12).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Paged through a pool of one layer's active experts, the logits equal the all-resident ones;
    /// the pool's catalog holds exactly the routed experts of the MoE layers (no dense layer, no
    /// shared expert), byte for byte the `*_exps` tensors of the file.
    func testPagingEqualsResidentAndOnlyRoutedExpertsArePaged() throws {
        for c in cases {
            let tokens = try Fixtures.manifest(c.name).sequences[2]
            let resident = try Model(path: c.gguf, options: ExecutorOptions(threads: 2))
            XCTAssertNil(resident.pagedExperts, c.name)
            let expected = try resident.logits(tokens: tokens)
            let paged = try Model(path: c.gguf, options: ExecutorOptions(threads: 2), memory: Model.MemoryOptions(expertCache: .minimum))
            let catalog = try XCTUnwrap(paged.pagedExperts?.catalog, c.name)
            XCTAssertTrue(try paged.logits(tokens: tokens) == expected, "\(c.name): paged logits differ from resident")

            XCTAssertEqual(catalog.layerCount, 3, c.name)
            XCTAssertEqual(catalog.expertCount, experts, c.name)
            for l in 0..<3 {
                for e in 0..<experts {
                    let entry = catalog.entry(ExpertKey(layer: l, expert: e))
                    XCTAssertEqual(entry != nil, moeLayers.contains(l), "\(c.name): layer \(l) expert \(e)")
                    if let entry { XCTAssertEqual(entry.tensors.count, 3, "\(c.name): gate, up, down only") }
                }
            }
            let inventory = try ModelSource(path: c.gguf).tensorInventory
            let routedBytes = inventory.filter { $0.name.contains("_exps.") }.reduce(0) { $0 + $1.bytes }
            XCTAssertTrue(inventory.contains { $0.name.contains("_shexp.") }, "\(c.name): the fixture has shared experts")
            XCTAssertTrue(inventory.contains { $0.name.hasPrefix("blk.0.ffn_gate.") }, "\(c.name): the fixture has a dense first layer")
            var catalogued = 0
            for l in moeLayers { for e in 0..<experts { catalogued += catalog.entry(ExpertKey(layer: l, expert: e))!.tensors.reduce(0) { $0 + $1.length } } }
            XCTAssertEqual(catalogued, routedBytes, c.name)

            // The command line, under a --memory a little above the minimum (62-64 MB, mostly the process's own baseline, which
            // moves with the size of the debug binary, and the margin) too, generates what the resident run generates.
            let args = ["generate", c.gguf, "--tokens", "5,17,200,33", "--max-new", "12", "--threads", "2"]
            let plain = try Fixtures.runMoe(args)
            XCTAssertEqual(plain.status, 0, plain.stderr)
            for flags in [["--expert-cache", "min"], ["--memory", "72MB", "--expert-cache", "min"]] {
                let run = try Fixtures.runMoe(args + flags)
                XCTAssertEqual(run.status, 0, "\(c.name) \(flags): \(run.stderr)")
                XCTAssertEqual(run.stdout, plain.stdout, "\(c.name) \(flags)")
            }
        }
    }

    /// trace records routes and store accesses for the MoE layers only; the dense first layer has none.
    func testTraceRecordsOnlyMoELayers() throws {
        for c in cases {
            let dir = TemporaryDirectory()
            let text = try text(in: dir)
            let out = dir.path("t.trace")
            let trace = try Fixtures.runMoe(["trace", c.gguf, "--text", text, "--tokens", "40", "--ctx-size", "32", "--threads", "2", "--expert-cache", "min", "-o", out])
            XCTAssertEqual(trace.status, 0, trace.stderr)
            let t = try TraceCodec.read(path: out)
            XCTAssertEqual(t.header.moeLayers, moeLayers, c.name)
            XCTAssertEqual(t.header.expertCount, experts, c.name)
            XCTAssertEqual(t.header.expertsPerToken, c.k, c.name)
            XCTAssertEqual(t.steps.count, 40, c.name)
            for step in t.steps {
                let routed = step.layers.filter { !$0.routes.isEmpty || !$0.accesses.isEmpty }.map(\.layer)
                XCTAssertEqual(routed, moeLayers, "\(c.name): step at \(step.position)")
                for layer in step.layers where moeLayers.contains(layer.layer) {
                    XCTAssertEqual(layer.routes.count, step.tokens.count, c.name)
                    XCTAssertTrue(layer.routes.allSatisfy { $0.experts.count == c.k && $0.experts.allSatisfy { (0..<experts).contains($0) } }, c.name)
                }
            }
        }
    }

    /// calibrate (proxy) measures the routed experts of the MoE layers only; a target size between
    /// the two all-one-type stores gives a store within it that pages and generates.
    func testCalibrateAndConvertToATargetSize() throws {
        for c in cases {
            let dir = TemporaryDirectory()
            let text = try text(in: dir)
            let calibration = dir.path("cal.json")
            let calibrate = try Fixtures.runMoe(["calibrate", c.gguf, "--text", text, "-o", calibration, "--ctx-size", "32", "--sensitivity-windows", "1",
                                                 "--types", "q4_0,q8_0", "--threads", "2"])
            XCTAssertEqual(calibrate.status, 0, calibrate.stderr)
            let file = try CalibrationFile.load(path: calibration)
            let measurements = try XCTUnwrap(file.sensitivity?.measurements, c.name)
            XCTAssertEqual(measurements.count, moeLayers.count * experts * 2, c.name)
            XCTAssertEqual(Set(measurements.map(\.layer)), Set(moeLayers), c.name)
            let source = try ModelSource(path: c.gguf)
            let small = try Converter.storeSize(source: source, plan: BitPlan(default: "q4_0"), calibration: file.routing)
            let large = try Converter.storeSize(source: source, plan: BitPlan(default: "q8_0"), calibration: file.routing)
            XCTAssertLessThan(small, large, c.name)
            let out = dir.path("planned.moe")
            let target = (small + large) / 2
            let convert = try Fixtures.runMoe(["convert", c.gguf, "-o", out, "--target-size", "\(target)", "--calibration", calibration, "--compression", "none"])
            XCTAssertEqual(convert.status, 0, convert.stderr)
            let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: out)[.size] as? Int)
            XCTAssertLessThanOrEqual(size, target, c.name)
            let inventory = try ModelSource(path: out).tensorInventory
            // ffn_down_exps rows (16 values) are shorter than a q4_0/q8_0 block, so only gate and up are planned.
            let types = Set(inventory.filter { $0.name.contains("gate_exps.weight") || $0.name.contains("up_exps.weight") }.map(\.type))
            XCTAssertTrue(types.isSubset(of: [.q4_0, .q8_0]) && types.contains(.q4_0), "\(c.name): \(types)")
            XCTAssertTrue(inventory.contains { $0.name.contains("_shexp.") }, "\(c.name): shared experts kept")
            let store = try Model(path: out, options: ExecutorOptions(threads: 2), memory: Model.MemoryOptions(expertCache: .minimum))
            let tokens = try Fixtures.manifest(c.name).sequences[1]
            let resident = try Model(path: out, options: ExecutorOptions(threads: 2)).logits(tokens: tokens)
            XCTAssertTrue(try store.logits(tokens: tokens) == resident, "\(c.name): planned store paged differs from resident")
            let run = try Fixtures.runMoe(["generate", out, "--tokens", "5,17", "--max-new", "4", "--expert-cache", "min"])
            XCTAssertEqual(run.status, 0, run.stderr)
        }
    }

    func testTuneCountsOnlyRoutedExperts() throws {
        for c in cases {
            let manifest = try Fixtures.manifest(c.name)
            let tokens = Array((manifest.sequences[2] + manifest.sequences[1] + manifest.sequences[2]).prefix(48))
            var options = TuneOptions(budget: nil, executor: ExecutorOptions(threads: 2), memory: .init(maxContext: 32))
            options.prefetchKinds = [.none]
            options.window = 16
            options.tokens = tokens.count
            options.verifyTokens = 8
            let result = try Model.tune(path: c.gguf, text: tokens, source: "test", options: options)
            XCTAssertEqual(result.totalExperts, moeLayers.count * experts, c.name)
            XCTAssertFalse(result.points.isEmpty, c.name)
            XCTAssertTrue(result.recommendation.point.withinBudget, c.name)
        }
    }
}
