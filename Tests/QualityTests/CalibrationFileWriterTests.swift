import Foundation
@testable import Quality
import Router
import TestSupport
import XCTest

/// The calibration file is written in pieces (`CalibrationFile.write`), with bounded memory; its
/// bytes are exactly what `JSONEncoder` with sorted keys writes for the same values.
final class CalibrationFileWriterTests: XCTestCase {
    var state: UInt64 = 99
    func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 11
    }

    /// Statistics whose arrays span several pieces, with random bits (so base64 holds "/").
    func statistics(layers: [Int], experts: Int, hidden: Int, ffn: Int) -> ActivationStatistics {
        let settings = ActivationStatistics.Settings(model: "m/\u{E9}.gguf", modelFingerprint: "ab12", text: "t \"x\".txt", tokensHash: "ff",
                                                     totalTokens: 1000, context: 64)
        var s = ActivationStatistics(settings: settings, layers: layers, expertCount: experts, hiddenSize: hidden, ffnSize: ffn)
        func fill(_ a: inout [Float]) { for i in a.indices { a[i] = Float(next() % 1_000_000) / 37 } }
        fill(&s.inputSquares)
        fill(&s.hiddenSquares)
        fill(&s.upGain)
        fill(&s.gateGain)
        s.tokens = 640
        s.uses = layers.map { _ in (0..<experts).map { _ in Int(next() % 500) } }
        s.routerWeightSquares = layers.map { _ in (0..<experts).map { _ in Float(next() % 1000) / 7 } }
        return s
    }

    func collected(_ write: (TransitionTable.JSONSink) throws -> Void) rethrows -> Data {
        var out = Data()
        try write { out.append($0) }
        return out
    }

    func testActivationsAreJSONEncodersBytes() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for (experts, hidden) in [(7, 2000), (1, 3), (0, 8)] {
            let s = statistics(layers: [0, 2, 3], experts: experts, hidden: hidden, ffn: 48)
            XCTAssertEqual(try collected(s.writeStored), try encoder.encode(s.stored), "\(experts) experts of \(hidden)")
        }
    }

    func testSensitivityTableIsJSONEncodersBytes() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let settings = SensitivityTable.Settings(model: "m", modelFingerprint: "f", text: "t", tokensHash: "h", context: 64, windows: 2,
                                                 types: ["q4_K", "q8_0"])
        for count in [0, 1, SensitivityTable.pieceMeasurements, 2 * SensitivityTable.pieceMeasurements + 5] {
            var table = SensitivityTable(settings: settings, baseNLL: 2.5, scoredTokens: 126, sourceTypes: ["f16", "f16", "f16"])
            table.measurements = (0..<count).map { i in
                SensitivityTable.Measurement(layer: i / 64, expert: i % 64, type: i % 2 == 0 ? "q4_K" : "q8_0",
                                             kld: Double(next() % 100_000) * 1e-9, deltaNLL: -Double(next() % 1000) / 3)
            }
            XCTAssertEqual(try collected(table.writeJSON), try encoder.encode(table), "\(count) measurements, measured")
            table.method = "proxy"
            table.activations = [[1, 2], [3, 4]]
            XCTAssertEqual(try collected(table.writeJSON), try encoder.encode(table), "\(count) measurements, proxy")
        }
    }

    /// The whole file: the routing table's members and both sections merged in key order, as
    /// when each section was encoded whole; and it loads back.
    func testFileIsTheMergedEncoding() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var routing = TransitionTable(layers: [0, 2, 3], expertCount: 7)
        for _ in 0..<50 { routing.record([0, 1, 2].map { _ in [Int(next() % 7), Int(next() % 7)] }) }
        let stats = statistics(layers: [0, 2, 3], experts: 7, hidden: 600, ffn: 48)
        let settings = SensitivityTable.Settings(model: "m", modelFingerprint: "f", text: "t", tokensHash: "h", context: 64, windows: 1,
                                                 types: ["q8_0"])
        var table = SensitivityTable(settings: settings, baseNLL: 0, scoredTokens: 1000, sourceTypes: ["f32", "f32", "f32"])
        table.method = "proxy"
        table.measurements = [0, 2, 3].flatMap { l in (0..<7).map { SensitivityTable.Measurement(layer: l, expert: $0, type: "q8_0", kld: 1e-7, deltaNLL: 0) } }
        let file = CalibrationFile(routing: routing, sensitivity: table, activations: stats)
        let dir = TemporaryDirectory()
        let path = dir.path("c.json")
        try file.write(to: path)
        let expected = try routing.json(merging: ["sensitivity": try encoder.encode(table), "activations": try encoder.encode(stats.stored)])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), expected)
        XCTAssertEqual(try CalibrationFile.load(path: path), file)
    }
}
