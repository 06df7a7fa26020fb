import Foundation
import SwiftMoE
import TestSupport
import XCTest

/// trace → report → export → tune → run --config with the built binary, as docs/tuning.md walks through.
final class TraceTuneCLITests: XCTestCase {
    func moe(_ arguments: [String]) throws -> MoeRun { try Fixtures.runMoe(arguments) }
    static func moe(_ arguments: [String]) throws -> MoeRun { try Fixtures.runMoe(arguments) }

    func testTraceReportExportTuneAndRunWithTheConfig() throws {
        let dir = TemporaryDirectory()
        let demo = Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path
        let text = Fixtures.packageRoot.appendingPathComponent("Models/demo/validation.txt").path
        let trace = dir.path("run.trace")
        var r = try moe(["trace", demo, "--text", text, "--tokens", "40", "--ctx-size", "20", "--expert-cache", "25%", "--threads", "2", "-o", trace])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("40 tokens, 320 expert requests"), r.stdout)
        let recorded = try TraceCodec.read(path: trace)
        XCTAssertEqual(recorded.tokenCount, 40)
        XCTAssertEqual(recorded.header.poolExperts, 16)

        r = try moe(["trace", "report", trace, "-o", dir.path("report.html"), "--svg-dir", dir.path("figures"), "--pair", "1,2", "--layer", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOfFile: dir.path("report.html"), encoding: .utf8)
        for name in TraceReport.figureNames {
            XCTAssertTrue(html.contains("<section id=\"\(name)\">"), name)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path("figures/\(name).svg")), name)
        }
        XCTAssertTrue(html.contains("Layer 1 → layer 2 transitions"))

        r = try moe(["trace", "export", trace, "-o", dir.path("run.json")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let perfetto = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.url.appendingPathComponent("run.json"))) as? [String: Any]
        let events = try XCTUnwrap(perfetto?["traceEvents"] as? [[String: Any]])
        XCTAssertEqual(events.filter { $0["cat"] as? String == "step" }.count, 40)
        XCTAssertEqual(events.filter { $0["cat"] as? String == "ffn" }.count, 160)
        r = try moe(["trace", "export", trace, "-o", dir.path("run.jsonl")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TraceCodec.read(path: dir.path("run.jsonl")), recorded)

        // Damaged and missing traces: one line, exit 1.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: trace))
        bytes[bytes.count / 2] ^= 1
        try bytes.write(to: dir.url.appendingPathComponent("bad.trace"))
        r = try moe(["trace", "report", dir.path("bad.trace"), "-o", dir.path("x.html")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("checksum mismatch"), r.stderr)

        // Tune from the trace: the replay agrees with the recorded run at its own configuration.
        let config = dir.path("tune.json")
        r = try moe(["tune", demo, "--trace", trace, "--verify-tokens", "20", "--svg", dir.path("tune.svg"), "--config-out", config, "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("<- recommended"), r.stdout)
        XCTAssertTrue(r.stdout.contains("0 requests disagree"), r.stdout)
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("moe run ") })
        let saved = try RunConfiguration.load(path: config)
        for argument in saved.arguments { XCTAssertTrue(line.contains(argument), "\(argument) in \(line)") }
        let svg = try String(contentsOfFile: dir.path("tune.svg"), encoding: .utf8)
        XCTAssertTrue(svg.contains("Belady MIN (bound)") && svg.contains("projected tokens/s"))

        // The config file drives a run; a flag on the command line overrides it.
        func pool(_ extra: [String]) throws -> Int {
            let b = try moe(["bench", demo, "--config", config, "--prompt-tokens", "4", "--gen-tokens", "2", "--repetitions", "1", "--json"] + extra)
            XCTAssertEqual(b.status, 0, b.stderr)
            let result = try JSONDecoder().decode(BenchmarkResult.self, from: Data(b.stdout.utf8))
            return try XCTUnwrap(result.expert_store?.poolCapacity)
        }
        XCTAssertEqual(try pool([]), saved.expertCacheSize?.bytes(ofTotal: 0))
        XCTAssertEqual(try pool(["--expert-cache", "min"]), 2 * 208_896)
        try Data("{\"format\": \"swiftmoe-run-config\", \"version\": 1, \"threads\": 0}".utf8).write(to: dir.url.appendingPathComponent("bad.json"))
        r = try moe(["bench", demo, "--config", dir.path("bad.json")])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("threads must be between 1 and 1024"), r.stderr)
    }
}
