import ExpertStore
import Foundation
import ModelFormats
import TestSupport
import Tracing
import XCTest

/// The trace format and its exports, on a hand-built trace (no model needed).
final class TraceFormatTests: XCTestCase {
    /// Two prefill tokens, then two decode steps with hits, a miss, a late prefetch, loads on
    /// two threads and an eviction: every field of the format is non-trivial somewhere.
    static func sample() -> Trace {
        let header = TraceHeader(model: "Models/demo/demo.moe", architecture: "qwen3moe", layerCount: 2, moeLayers: [0, 1], expertCount: 4,
                                 expertsPerToken: 2, expertBytes: 8192, uniformExperts: true, paged: true, poolBytes: 4 * 8192, budget: 200_000_000,
                                 cachePolicy: "lfu", prefetch: "lookahead", prefetchDepth: 1, prefetchWidth: 3, loaderThreads: 1, threads: 2,
                                 kernels: "fast", mode: "generate", source: "prompt: \"héllo\" <tag> & more", created: "2026-01-01T00:00:00Z")
        var trace = Trace(header: header)
        let k = { (l: Int, e: Int) in ExpertKey(layer: l, expert: e) }
        trace.steps.append(TraceStep(kind: .prefill, position: 0, tokens: [17, 4095], start: 1_000, end: 90_000, layers: [
            TraceLayer(layer: 0, attentionStart: 1_100, ffnStart: 5_000, ffnEnd: 40_000,
                       routes: [TraceRoute(experts: [1, 3], weights: [0.625, 0.375]), TraceRoute(experts: [3, 0], weights: [0.5, 0.5])],
                       accesses: [TraceAccess(expert: 0, outcome: .miss, time: 5_100, stall: 9_000, bytes: 8192, loadTime: 8_500),
                                  TraceAccess(expert: 1, outcome: .miss, time: 15_000, stall: 9_000, bytes: 8192, loadTime: 8_700),
                                  TraceAccess(expert: 3, outcome: .miss, time: 25_000, stall: 9_000, bytes: 8192, loadTime: 8_600)]),
            TraceLayer(layer: 1, attentionStart: 40_100, ffnStart: 45_000, ffnEnd: 89_000,
                       routes: [TraceRoute(experts: [2, 0], weights: [0.7, 0.3]), TraceRoute(experts: [2, 1], weights: [0.9, 0.1])],
                       accesses: [TraceAccess(expert: 0, outcome: .miss, time: 45_100, stall: 9_000, bytes: 8192, loadTime: 8_500),
                                  TraceAccess(expert: 1, outcome: .miss, time: 55_000, stall: 9_000, bytes: 8192, loadTime: 8_800),
                                  TraceAccess(expert: 2, outcome: .miss, time: 65_000, stall: 9_000, bytes: 8192, loadTime: 8_400)]),
        ]))
        trace.steps.append(TraceStep(kind: .decode, position: 2, tokens: [9], start: 100_000, end: 160_000, layers: [
            TraceLayer(layer: 0, attentionStart: 100_100, ffnStart: 110_000, ffnEnd: 130_000,
                       routes: [TraceRoute(experts: [3, 1], weights: [Float.ulpOfOne, 1 - Float.ulpOfOne])],
                       accesses: [TraceAccess(expert: 1, outcome: .hit, time: 111_000), TraceAccess(expert: 3, outcome: .hit, time: 112_000)],
                       prefetches: [TracePrefetch(requested: [k(1, 3), k(1, 2), k(1, 0)], queued: [k(1, 3)], time: 110_500)]),
            TraceLayer(layer: 1, attentionStart: 130_100, ffnStart: 140_000, ffnEnd: 159_000,
                       routes: [TraceRoute(experts: [3, 2], weights: [0.51, 0.49])],
                       accesses: [TraceAccess(expert: 2, outcome: .hit, time: 141_000),
                                  TraceAccess(expert: 3, outcome: .late, prefetched: true, time: 142_000, stall: 3_000, bytes: 8192, loadTime: 9_000)]),
        ]))
        trace.steps.append(TraceStep(kind: .decode, position: 3, tokens: [0], start: 170_000, end: 220_000, layers: [
            TraceLayer(layer: 0, attentionStart: 170_100, ffnStart: 180_000, ffnEnd: 200_000, routes: [TraceRoute(experts: [2, 0], weights: [0.8, 0.2])],
                       accesses: [TraceAccess(expert: 0, outcome: .hit, time: 181_000),
                                  TraceAccess(expert: 2, outcome: .miss, time: 182_000, stall: 10_000, bytes: 8192, loadTime: 9_500)]),
            TraceLayer(layer: 1, attentionStart: 200_100, ffnStart: 205_000, ffnEnd: 219_000, routes: [TraceRoute(experts: [2, 3], weights: [0.6, 0.4])],
                       accesses: [TraceAccess(expert: 2, outcome: .hit, time: 206_000), TraceAccess(expert: 3, outcome: .hit, time: 207_000)]),
        ]))
        trace.loads = [
            TraceLoad(key: k(0, 0), prefetch: false, thread: 0, start: 5_200, end: 13_700, bytes: 8192),
            TraceLoad(key: k(1, 3), prefetch: true, thread: 1, start: 111_000, end: 120_000, bytes: 8192),
            TraceLoad(key: k(0, 2), prefetch: false, thread: 0, start: 182_100, end: 191_600, bytes: 8192, failed: false),
        ]
        trace.evictions = [TraceEviction(key: k(1, 0), unusedPrefetch: false, time: 182_050), TraceEviction(key: k(1, 1), unusedPrefetch: true, time: 110_600)]
        return trace
    }

    func testBinaryRoundTripsExactly() throws {
        let trace = Self.sample()
        let bytes = try TraceCodec.encode(trace)
        XCTAssertEqual(Array(bytes.prefix(8)), Array("MOETRACE".utf8))
        let decoded = try TraceCodec.decode(bytes, path: "sample.trace")
        XCTAssertEqual(decoded, trace)
        // Through a file too, with the reader that tells binary from JSONL.
        let dir = TemporaryDirectory()
        try TraceCodec.write(trace, to: dir.path("run.trace"))
        XCTAssertEqual(try TraceCodec.read(path: dir.path("run.trace")), trace)
    }

    func testJSONLRoundTripsExactly() throws {
        let trace = Self.sample()
        let data = try TraceJSONL.encode(trace)
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        // header + 3 steps + 6 layers + 14 accesses + 3 loads + 2 evictions
        XCTAssertEqual(lines.count, 1 + 3 + 6 + 14 + 3 + 2)
        for line in lines { XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), String(line)) }
        XCTAssertEqual(try TraceJSONL.decode(data, path: "run.jsonl"), trace)
        let dir = TemporaryDirectory()
        try data.write(to: dir.url.appendingPathComponent("run.jsonl"))
        XCTAssertEqual(try TraceCodec.read(path: dir.path("run.jsonl")), trace)
    }

    func testDamagedFilesGiveClearErrors() throws {
        let bytes = try TraceCodec.encode(Self.sample())
        func error(_ b: [UInt8]) -> TraceError? {
            do {
                _ = try TraceCodec.decode(b, path: "x.trace")
                return nil
            } catch let e as TraceError {
                return e
            } catch {
                XCTFail("unexpected error type \(error)")
                return nil
            }
        }
        // Every truncation is refused with a TraceError (never a crash).
        for n in stride(from: 0, to: bytes.count, by: 7) { XCTAssertNotNil(error(Array(bytes.prefix(n))), "truncated at \(n)") }
        // A flipped byte anywhere in the header or body fails the checksum (or the structure).
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x40
        guard case .checksumMismatch = error(flipped) else { return XCTFail("expected a checksum mismatch") }
        var version = bytes
        version[8] = 9
        XCTAssertEqual(error(version), .unsupportedVersion(path: "x.trace", version: 9))
        XCTAssertEqual(error(Array("not a trace at all".utf8)), .notATrace(path: "x.trace"))
        // A body that is well-formed but names an expert outside the model is caught by validation.
        var bad = Self.sample()
        bad.steps[1].layers[0].accesses[0].expert = 4
        let encoded = try TraceCodec.encode(bad)
        guard case let .invalid(_, reason) = error(encoded) else { return XCTFail("expected invalid") }
        XCTAssertTrue(reason.contains("expert 4 of layer 0"), reason)
        // Garbage with a valid checksum: a huge count must not allocate, just fail.
        var w = [UInt8]("MOETRACE".utf8) + [1, 0, 0, 0]
        let header = Array(try JSONEncoder().encode(Self.sample().header))
        w += withUnsafeBytes(of: UInt32(header.count).littleEndian, Array.init) + header
        let body: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]  // 4 billion steps
        w += withUnsafeBytes(of: UInt64(body.count).littleEndian, Array.init) + body
        w += withUnsafeBytes(of: XXH64.hash(header + body).littleEndian, Array.init)
        guard case .invalid = error(w) else { return XCTFail("expected invalid count") }
        // JSONL: a bad line names its number.
        let jsonl = String(decoding: try TraceJSONL.encode(Self.sample()), as: UTF8.self).replacingOccurrences(of: "\"outcome\":\"late\"", with: "\"outcome\":\"soon\"")
        XCTAssertThrowsError(try TraceJSONL.decode(Data(jsonl.utf8), path: "r.jsonl")) { e in
            XCTAssertTrue("\(e)".contains("unknown outcome soon"), "\(e)")
        }
        XCTAssertThrowsError(try TraceCodec.read(path: "/nonexistent/run.trace")) { e in XCTAssertTrue("\(e)".contains("no such file")) }
        // JSONL lines out of place (before any step, or naming step -1) are errors, not crashes.
        let lines = String(decoding: try TraceJSONL.encode(Self.sample()), as: UTF8.self).split(separator: "\n").map(String.init)
        let placed = lines.dropFirst().filter { $0.contains("\"type\":\"layer\"") || $0.contains("\"type\":\"access\"") }
        XCTAssertFalse(placed.isEmpty)
        for line in placed {
            for step in ["-1", "0", "99"] {
                let moved = line.replacingOccurrences(of: #""step":\d+"#, with: "\"step\":\(step)", options: .regularExpression)
                XCTAssertThrowsError(try TraceJSONL.decode(Data((lines[0] + "\n" + moved + "\n").utf8), path: "r.jsonl"), moved)
            }
        }
    }

    /// Headers made to pass the checksum but describe an impossible or unreportable model: an
    /// MoE layer listed twice (the report's layer index would trap) or 16,000 experts per layer
    /// (expert × expert tables of gigabytes) are refused when the file is read, in both formats.
    func testCraftedHeadersAreRefused() throws {
        var duplicate = Self.sample()
        duplicate.header.moeLayers = [1, 1]
        var huge = Self.sample()
        huge.header.expertCount = 16_000
        for (label, trace, expected) in [("duplicate layer", duplicate, "not strictly increasing"), ("16000 experts", huge, "at most 1024")] {
            let binary = try TraceCodec.encode(trace)
            XCTAssertThrowsError(try TraceCodec.decode(binary, path: "x.trace"), label) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(label): \(error)")
            }
            XCTAssertThrowsError(try TraceJSONL.decode(TraceJSONL.encode(trace), path: "x.jsonl"), label) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(label) JSONL: \(error)")
            }
        }
    }

    /// Found by fuzzing (target trace, 2026-12-01): the model path a trace's header names is
    /// text from the file; a report's errors show it escaped, on one line.
    func testReportErrorsShowTheHeadersModelEscaped() throws {
        var trace = Self.sample()
        trace.header.model = "/tmp/a\nb/y.gguf"
        trace.header.moeLayers = []
        XCTAssertThrowsError(try TraceReport(trace: trace)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(#"/tmp/a\nb/y.gguf"#), message)
            XCTAssertFalse(message.contains("\n"), message)
        }
    }

    func testPerfettoExportHoldsTheTimeline() throws {
        let trace = Self.sample()
        let object = try JSONSerialization.jsonObject(with: try TracePerfetto.encode(trace)) as? [String: Any]
        let events = try XCTUnwrap(object?["traceEvents"] as? [[String: Any]])
        func slices(_ cat: String) -> [[String: Any]] { events.filter { $0["ph"] as? String == "X" && $0["cat"] as? String == cat } }
        XCTAssertEqual(slices("step").count, 3)
        XCTAssertEqual(slices("attention").count, 6)
        XCTAssertEqual(slices("ffn").count, 6)
        XCTAssertEqual(slices("demand").count, 2)
        XCTAssertEqual(slices("prefetch").count, 1)
        // Compute on one track, demand loads on the executor I/O track, the prefetch on loader 1's track.
        XCTAssertEqual(Set((slices("attention") + slices("ffn")).map { $0["tid"] as? Int }), [TracePerfetto.computeThread])
        XCTAssertEqual(Set(slices("demand").map { $0["tid"] as? Int }), [TracePerfetto.demandThread])
        XCTAssertEqual(slices("prefetch").first?["tid"] as? Int, TracePerfetto.loaderThreadBase + 1)
        // Microseconds: the prefetch load ran 111 µs → 120 µs.
        XCTAssertEqual(slices("prefetch").first?["ts"] as? Double, 111)
        XCTAssertEqual(slices("prefetch").first?["dur"] as? Double, 9)
        let ffn = slices("ffn").first { ($0["ts"] as? Double) == 110 }
        XCTAssertEqual(ffn?["dur"] as? Double, 20)
        let names = events.filter { $0["ph"] as? String == "M" }.compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
        XCTAssertTrue(names.contains("loader 1 (prefetch)"), "\(names)")
        XCTAssertEqual(events.filter { $0["cat"] as? String == "eviction" }.count, 2)
        XCTAssertEqual(events.filter { $0["ph"] as? String == "C" }.count, 3)
    }

    func testCSVTables() throws {
        let trace = Self.sample()
        let accesses = TraceCSV.encode(trace, table: .accesses).split(separator: "\n")
        XCTAssertEqual(accesses.count, 1 + 14)
        XCTAssertEqual(accesses[0], "step,kind,position,layer,expert,outcome,prefetched,time_s,stall_s,bytes,load_s")
        XCTAssertEqual(accesses[1], "0,prefill,0,0,0,miss,0,0.000005100,0.000009000,8192,0.000008500")
        XCTAssertTrue(accesses.contains("1,decode,2,1,3,late,1,0.000142000,0.000003000,8192,0.000009000"))
        let routes = TraceCSV.encode(trace, table: .routes).split(separator: "\n")
        XCTAssertEqual(routes.count, 1 + 2 * (2 * 2 + 2 + 2))
        XCTAssertTrue(routes.contains("0,prefill,1,0,0,3,0.5"), "the second prefill token's route is at position 1")
        XCTAssertEqual(TraceCSV.encode(trace, table: .layers).split(separator: "\n").count, 1 + 6)
        XCTAssertEqual(TraceCSV.encode(trace, table: .loads).split(separator: "\n").count, 1 + 3)
    }

    func testReportHoldsEveryFigureAndItsNumbers() throws {
        let report = try TraceReport(trace: Self.sample())
        XCTAssertEqual(report.figures.map(\.name), TraceReport.figureNames)
        for f in report.figures {
            XCTAssertTrue(f.svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""), f.name)
            XCTAssertTrue(report.html.contains("<section id=\"\(f.name)\">"), f.name)
            XCTAssertTrue(report.html.contains(f.svg), "\(f.name) is inline")
            XCTAssertTrue(f.numbers.contains("<table>"), "\(f.name) has its numbers")
            // Standalone SVGs are well-formed: every element closes, in order, and text is escaped.
            XCTAssertTrue(Self.tagsBalance(f.svg), f.name)
        }
        XCTAssertFalse(Self.tagsBalance("<svg><rect></svg>"))
        XCTAssertFalse(Self.tagsBalance("<svg><text>a & b</text></svg>"))
        XCTAssertTrue(report.html.contains("&lt;tag&gt; &amp; more"), "text from the trace is escaped")
        XCTAssertFalse(report.html.contains("<script"), "self-contained, no scripts")
        XCTAssertThrowsError(try TraceReport(trace: Self.sample(), pair: (0, 5))) { e in XCTAssertTrue("\(e)".contains("layer 5 is not a MoE layer")) }
    }

    /// Whether every start tag has its end tag in nesting order (self-closing tags count as both),
    /// and no bare `&` or `<` is left in text. Enough to catch broken generated markup without an
    /// XML library (FoundationXML needs libxml2, which a fresh machine may lack).
    static func tagsBalance(_ xml: String) -> Bool {
        var stack: [Substring] = []
        var rest = Substring(xml)
        while let open = rest.firstIndex(of: "<") {
            let text = rest[..<open]
            if text.contains("&") && text.split(separator: "&").dropFirst().contains(where: { !($0.hasPrefix("amp;") || $0.hasPrefix("lt;") || $0.hasPrefix("gt;") || $0.hasPrefix("quot;")) }) { return false }
            guard let close = rest[open...].firstIndex(of: ">") else { return false }
            let tag = rest[rest.index(after: open)..<close]
            if tag.hasPrefix("/") {
                guard stack.popLast() == tag.dropFirst() else { return false }
            } else if !tag.hasSuffix("/") {
                stack.append(tag.prefix { $0 != " " })
            }
            rest = rest[rest.index(after: close)...]
        }
        return stack.isEmpty
    }

    /// The analyses on the sample, worked out by hand.
    func testAnalysisByHand() {
        let a = TraceAnalysis(Self.sample())
        // Layer 0 routes: [1,3] [3,0] [3,1] [2,0] → e0 2, e1 2, e2 1, e3 3.
        XCTAssertEqual(a.frequency[0], [2, 2, 1, 3])
        // Layer 1 routes: [2,0] [2,1] [3,2] [2,3] → e0 1, e1 1, e2 4, e3 2.
        XCTAssertEqual(a.frequency[1], [1, 1, 4, 2])
        // Tokens with e3 at layer 0: routes 1,2,3 → at layer 1 [2,0],[2,1],[3,2]: e0 1, e1 1, e2 3, e3 1.
        XCTAssertEqual(a.transitions(from: 0, to: 1)[3], [1, 1, 3, 1])
        XCTAssertEqual(a.coactivation(layer: 0)[1][3], 2)
        XCTAssertEqual(a.coactivation(layer: 0)[3][1], 2)
        // Requests: L0E0 L0E1 L0E3 L1E0 L1E1 L1E2 | L0E1 L0E3 L1E2 L1E3 | L0E0 L0E2 L1E2 L1E3.
        XCTAssertEqual(a.reuseDistances, [nil, nil, nil, nil, nil, nil, 4, 4, 2, nil, 6, nil, 3, 3])
        let s = a.summary
        XCTAssertEqual([s.accesses, s.hits, s.late, s.misses, s.prefetchedHits], [14, 6, 1, 7, 1])
        XCTAssertEqual(s.decodeSteps, 2)
        XCTAssertEqual(a.hitRateOverTokens().map(\.tokens), [2, 3, 4])
        XCTAssertEqual(a.hitRateOverTokens().last?.cumulative ?? 0, 7.0 / 14, accuracy: 1e-12)
    }
}
