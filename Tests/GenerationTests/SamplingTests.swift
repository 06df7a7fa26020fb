import Foundation
import ChatTemplate
import Executor
import Generation
import Runtime
import Tokenizer
import XCTest

/// Sampler stages on hand-worked distributions.
final class SamplingTests: XCTestCase {
    func options(_ body: (inout GenerationOptions) -> Void) -> GenerationOptions {
        var o = GenerationOptions()
        o.topK = 0; o.topP = 1; o.minP = 0; o.temperature = 1
        body(&o)
        return o
    }

    func testRepetitionPenaltyFollowsLlamaCpp() {
        var logits: [Float] = [2, 1, 0, -1]
        Sampler.penalize(&logits, previous: [0, 3, 3, 0], penalty: 2)
        XCTAssertEqual(logits, [1, 1, 0, -2])  // positive divided, negative multiplied, each token once
        var untouched: [Float] = [2, -1]
        Sampler.penalize(&untouched, previous: [0, 1], penalty: 1)
        XCTAssertEqual(untouched, [2, -1])
    }

    func testTopKTopPMinP() {
        // probabilities 0.5, 0.3, 0.15, 0.05 (logits are their logs), listed out of order
        let logits: [Float] = [log(0.15), log(0.5), log(0.05), log(0.3)]
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topK = 2 }).map(\.id), [1, 3])
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topP = 0.75 }).map(\.id), [1, 3])      // 0.5 + 0.3 reaches 0.75
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topP = 0.79 }).map(\.id), [1, 3])
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topP = 0.81 }).map(\.id), [1, 3, 0])
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topP = 0.01 }).map(\.id), [1])         // at least one
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.minP = 0.25 }).map(\.id), [1, 3, 0])   // 0.15 >= 0.125 > 0.05
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.minP = 0.7 }).map(\.id), [1])
        // chained: top-k 3 renormalizes to 0.5/0.95, 0.3/0.95, 0.15/0.95 before top-p 0.8 → 0.526 + 0.316 ≥ 0.8
        XCTAssertEqual(Sampler.filter(logits, options: options { $0.topK = 3; $0.topP = 0.8 }).map(\.id), [1, 3])
    }

    func testTemperatureAndDraw() {
        let candidates = [Sampler.Candidate(id: 7, logit: log(4)), Sampler.Candidate(id: 9, logit: 0)]
        let p1 = Sampler.probabilities(candidates, temperature: 1)
        XCTAssertEqual(p1[0].p, 0.8, accuracy: 1e-6)
        let half = Sampler.probabilities(candidates, temperature: 0.5)  // (4/1)^2 = 16 : 1
        XCTAssertEqual(half[0].p, 16.0 / 17.0, accuracy: 1e-6)
        XCTAssertEqual(half[1].p, 1.0 / 17.0, accuracy: 1e-6)
        XCTAssertEqual(Sampler.draw(p1, u: 0.0), 7)
        XCTAssertEqual(Sampler.draw(p1, u: 0.799), 7)
        XCTAssertEqual(Sampler.draw(p1, u: 0.801), 9)
    }

    func testGreedyIgnoresRandomness() {
        var s = Sampler(options: .greedy)
        XCTAssertEqual(s.sample(logits: [0.1, 3, 2], previous: []), 1)
        var penalized = GenerationOptions.greedy
        penalized.repetitionPenalty = 2
        var t = Sampler(options: penalized)
        XCTAssertEqual(t.sample(logits: [0.1, 3, 2], previous: [1]), 2)  // 3/2 < 2
    }

    func testGeneratorIsDeterministicAndMatchesReference() {
        // xoshiro256** seeded by SplitMix64(42), values from an independent Python implementation.
        var g = Xoshiro256StarStar(seed: 42)
        XCTAssertEqual([g.next(), g.next(), g.next()], [1_546_998_764_402_558_742, 6_990_951_692_964_543_102, 12_544_586_762_248_559_009])
        var a = Sampler(options: options { $0.seed = 7 }), b = Sampler(options: options { $0.seed = 7 })
        let logits: [Float] = [0, 0.5, 1, 1.5]
        XCTAssertEqual((0..<50).map { _ in a.sample(logits: logits, previous: []) }, (0..<50).map { _ in b.sample(logits: logits, previous: []) })
    }

    func testSampledFrequenciesFollowTheDistribution() {
        var s = Sampler(options: options { $0.seed = 1 })
        let logits: [Float] = [log(0.5), log(0.3), log(0.2)]
        var counts = [0, 0, 0]
        for _ in 0..<20000 { counts[s.sample(logits: logits, previous: [])] += 1 }
        XCTAssertEqual(Double(counts[0]) / 20000, 0.5, accuracy: 0.015)
        XCTAssertEqual(Double(counts[1]) / 20000, 0.3, accuracy: 0.015)
        XCTAssertEqual(Double(counts[2]) / 20000, 0.2, accuracy: 0.015)
    }

    func testStopStringsAcrossPieces() {
        var m = StopStringMatcher(["world", "</s>"])
        XCTAssertEqual(m.append("Hello wor"), "Hello ")  // "wor" might start "world"
        XCTAssertEqual(m.append("ld! more"), "")
        XCTAssertTrue(m.stopped)
        XCTAssertEqual(m.append("ignored"), "")

        var n = StopStringMatcher(["</s>"])
        XCTAssertEqual(n.append("abc</"), "abc")
        XCTAssertEqual(n.append("x"), "</x")
        XCTAssertEqual(n.append("<"), "")
        XCTAssertEqual(n.flush(), "<")
        XCTAssertFalse(n.stopped)

        var crlf = StopStringMatcher(["\r\n"])
        XCTAssertEqual(crlf.append("line\r"), "line")
        XCTAssertEqual(crlf.append("\nnext"), "")
        XCTAssertTrue(crlf.stopped)

        var earliest = StopStringMatcher(["bc", "ab"])
        XCTAssertEqual(earliest.append("xabc"), "x")
        var none = StopStringMatcher([])
        XCTAssertEqual(none.append("é🌍"), "é🌍")
    }
}
