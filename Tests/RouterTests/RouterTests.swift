import ModelFormats
import Router
import XCTest

/// Routing rules worked by hand (docs/design.md §2).
final class RouterTests: XCTestCase {
    // logits ln(1), ln(2), ln(3), ln(4): softmax = 0.1, 0.2, 0.3, 0.4
    let logits: [Float] = [0, Float(log(2.0)), Float(log(3.0)), Float(log(4.0))]

    func testSoftmaxTopKRenormalised() {
        let router = Router(routing: .init(normalizeTopK: true), expertCount: 4, topK: 2)
        let choices = router.route(logits: logits)
        XCTAssertEqual(choices.map(\.expert), [3, 2])
        XCTAssertEqual(choices[0].weight, 0.4 / 0.7, accuracy: 1e-6)
        XCTAssertEqual(choices[1].weight, 0.3 / 0.7, accuracy: 1e-6)
    }

    func testSoftmaxTopKWithoutRenormalisation() {
        let router = Router(routing: .init(normalizeTopK: false), expertCount: 4, topK: 3)
        let choices = router.route(logits: logits)
        XCTAssertEqual(choices.map(\.expert), [3, 2, 1])
        XCTAssertEqual(choices.map(\.weight), [0.4, 0.3, 0.2].map(Float.init), accuracy: 1e-6)
    }

    func testScaleAppliesAfterNormalisation() {
        let router = Router(routing: .init(normalizeTopK: true, scale: 2.5), expertCount: 4, topK: 1)
        XCTAssertEqual(router.route(logits: logits)[0].weight, 2.5, accuracy: 1e-6)
    }

    func testTiesGoToTheLowerIndexAndOrderIsDescending() {
        XCTAssertEqual(Router.topK([1, 5, 5, 2, 5], k: 2), [1, 2])
        XCTAssertEqual(Router.topK([1, 5, 5, 2, 5], k: 4), [1, 2, 4, 3])
        XCTAssertEqual(Router.topK([3, 1, 2], k: 3), [0, 2, 1])
    }

    func testSoftmaxIsStableForLargeLogits() {
        let router = Router(routing: .init(normalizeTopK: false), expertCount: 3, topK: 3)
        let choices = router.route(logits: [1000, 1000, -1000])
        XCTAssertEqual(choices.map(\.weight), [0.5, 0.5, 0], accuracy: 1e-6)
    }
}

func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
