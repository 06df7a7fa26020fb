import Executor
import Foundation
import Profiling
import Runtime
import TestSupport
import Tracing
import XCTest

/// A trace hooks the model's transformer and store for its whole run; another task using the
/// same model meanwhile waits (`Model.withExclusiveAccess`), so none of its passes or expert
/// requests end up in the trace, and its own results are unchanged.
final class ConcurrentTraceTests: XCTestCase {
    func testATraceHoldsOnlyItsOwnPassesWhileAnotherTaskUsesTheModel() async throws {
        let sequences = try Fixtures.manifest("olmoe").sequences
        let model = try Model(path: Fixtures.path("olmoe/model-q8_0.gguf"), options: ExecutorOptions(threads: 2),
                              memory: .init(expertCache: .fraction(0.5)))
        let other = sequences[2]
        let expected = try model.logits(tokens: other)
        let tokens = Array((sequences[1] + sequences[2]).prefix(24))
        let workload = TraceWorkload.text(tokens: tokens, mode: .decode, window: tokens.count)

        let tracing = Task.detached { try model.recordTrace(workload, source: "test") }
        let using = Task.detached {
            for _ in 0..<4 { XCTAssertTrue(try model.logits(tokens: other) == expected, "logits differ") }
        }
        let trace = try await tracing.value
        try await using.value

        XCTAssertEqual(trace.steps.map(\.tokens), tokens.map { [$0] })
        var checked = 0
        for (i, step) in trace.steps.enumerated() {
            for layer in step.layers where !layer.routes.isEmpty {
                // Decode: the store sees this token's experts of this layer, once each, and nothing else.
                let routed = try XCTUnwrap(layer.routes.first).experts
                XCTAssertEqual(layer.accesses.map(\.expert).sorted(), routed.sorted(), "step \(i), layer \(layer.layer)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }
}
