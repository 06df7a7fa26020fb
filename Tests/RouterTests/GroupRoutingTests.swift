import Foundation
import ModelFormats
import Router
import XCTest

/// DeepSeek/GLM routing rules worked by hand (docs/design.md §2): sigmoid scores, a selection bias
/// that chooses but does not weight, group-limited top-k with either group score, and the two
/// ways of masking dropped groups (transformers' 0, llama.cpp's -inf).
final class GroupRoutingTests: XCTestCase {
    typealias Groups = ModelConfiguration.Routing.Groups

    /// Logits whose softmax is exactly `probabilities` (they sum to 1).
    func logits(_ probabilities: [Double]) -> [Float] { probabilities.map { Float(log($0)) } }

    func testSelectionBiasChoosesButDoesNotWeight() {
        // sigmoid(0) = 0.5 for every expert; the bias makes experts 3 then 1 win.
        let plain = Router(routing: .init(scoring: .sigmoid, normalizeTopK: false, scale: 2, selectionBias: true),
                           expertCount: 4, topK: 2, selectionBias: [0, 0.1, 0, 0.2])
        let choices = plain.route(logits: [0, 0, 0, 0])
        XCTAssertEqual(choices.map(\.expert), [3, 1])
        XCTAssertEqual(choices.map(\.weight), [1, 1], accuracy: 1e-6)  // 0.5 × 2, the bias left out
        let normalised = Router(routing: .init(scoring: .sigmoid, normalizeTopK: true, scale: 2.5, selectionBias: true),
                                expertCount: 4, topK: 2, selectionBias: [0, 0.1, 0, 0.2])
        XCTAssertEqual(normalised.route(logits: [0, 0, 0, 0]).map(\.weight), [1.25, 1.25], accuracy: 1e-6)
    }

    func testSigmoidWeightsAreTheSigmoids() {
        let router = Router(routing: .init(scoring: .sigmoid, normalizeTopK: false), expertCount: 3, topK: 2)
        let choices = router.route(logits: [Float(log(3.0)), 0, Float(-log(3.0))])  // sigmoids 0.75, 0.5, 0.25
        XCTAssertEqual(choices.map(\.expert), [0, 1])
        XCTAssertEqual(choices.map(\.weight), [0.75, 0.5], accuracy: 1e-6)
    }

    func testGroupScoreByBestExpertOrByBestTwo() {
        // Three groups of two. Best expert: 0.30 | 0.20 | 0.15 -> group 0. Best two: 0.31 | 0.39 | 0.30 -> group 1.
        let p = logits([0.30, 0.01, 0.20, 0.19, 0.15, 0.15])
        let byMax = Router(routing: .init(normalizeTopK: false, groups: Groups(count: 3, used: 1, score: .max, masking: .zero)),
                           expertCount: 6, topK: 2)
        XCTAssertEqual(byMax.route(logits: p).map(\.expert), [0, 1])
        XCTAssertEqual(byMax.route(logits: p).map(\.weight), [0.30, 0.01], accuracy: 1e-6)
        let byTwo = Router(routing: .init(normalizeTopK: false, groups: Groups(count: 3, used: 1, score: .topTwoSum, masking: .exclude)),
                           expertCount: 6, topK: 2)
        XCTAssertEqual(byTwo.route(logits: p).map(\.expert), [2, 3])
        // Without groups the two best experts overall win.
        XCTAssertEqual(Router(routing: .init(normalizeTopK: false), expertCount: 6, topK: 2).route(logits: p).map(\.expert), [0, 2])
    }

    func testDroppedGroupsMaskedToZeroCanStillWin() {
        // sigmoid(0) = 0.5; biased selection scores -0.5, -0.5 | -0.3, -0.4. Best two: -1.0 | -0.7 -> group 1 kept.
        let bias: [Float] = [-1, -1, -0.8, -0.9]
        func router(_ masking: Groups.Masking) -> Router {
            Router(routing: .init(scoring: .sigmoid, normalizeTopK: false, groups: Groups(count: 2, used: 1, score: .topTwoSum, masking: masking), selectionBias: true),
                   expertCount: 4, topK: 2, selectionBias: bias)
        }
        // transformers fills dropped experts with 0, which beats the kept experts' negative scores.
        XCTAssertEqual(router(.zero).route(logits: [0, 0, 0, 0]).map(\.expert), [0, 1])
        // llama.cpp fills -inf: only the kept group can win.
        XCTAssertEqual(router(.exclude).route(logits: [0, 0, 0, 0]).map(\.expert), [2, 3])
    }

    func testSelectionProbabilitiesRankAsTheRouterChooses() {
        let softmax = Router(routing: .init(normalizeTopK: false), expertCount: 4, topK: 2)
        XCTAssertEqual(softmax.selectionProbabilities(logits: logits([0.1, 0.2, 0.3, 0.4])), [0.1, 0.2, 0.3, 0.4], accuracy: 1e-6)
        let biased = Router(routing: .init(scoring: .sigmoid, normalizeTopK: false, selectionBias: true),
                            expertCount: 4, topK: 2, selectionBias: [0, 0.1, 0, 0.2])
        let p = biased.selectionProbabilities(logits: [Float](repeating: 0, count: 4))  // 0.5, 0.6, 0.5, 0.7 over 2.3
        let expected: [Float] = [0.5, 0.6, 0.5, 0.7].map { $0 / 2.3 }
        XCTAssertEqual(p, expected, accuracy: 1e-6)
    }

    func testGroupsThatCannotHoldTopKAreRefused() {
        var config = ModelConfiguration(
            architecture: .deepseek3, vocabSize: 10, hiddenSize: 8, layerCount: 1, headCount: 2, kvHeadCount: 2, headDim: 4,
            ropeTheta: 1e4, ropeStyle: .halfSplit, rmsNormEpsilon: 1e-6, contextLength: 16, expertCount: 8, expertsPerToken: 3,
            expertFFNSize: 4, routing: .init(scoring: .sigmoid, normalizeTopK: true, groups: Groups(count: 4, used: 1, score: .topTwoSum, masking: .zero)),
            tiedEmbeddings: false)
        XCTAssertThrowsError(try config.validate(source: "test"))  // one group of 2 cannot hold top-3
        config.routing.groups = Groups(count: 3, used: 2, score: .topTwoSum, masking: .zero)
        XCTAssertThrowsError(try config.validate(source: "test"))  // 8 experts do not split into 3 groups
        config.routing.groups = Groups(count: 4, used: 2, score: .topTwoSum, masking: .zero)
        XCTAssertNoThrow(try config.validate(source: "test"))
    }
}
