import Executor
import Foundation
import Runtime
import TestSupport
import XCTest

/// Two tasks using one `Model` at once are serialized (`Model.withExclusiveAccess`): each gets
/// exactly what it gets alone, with experts resident or paged through a pool of one layer's
/// active experts.
final class ConcurrentUseTests: XCTestCase {
    func testTwoTasksOnOneModelGetWhatEachGetsAlone() async throws {
        let path = Fixtures.path("olmoe/model-q8_0.gguf")
        let sequences = try Fixtures.manifest("olmoe").sequences
        let (a, b) = (sequences[2], sequences[1])
        for memory in [Model.MemoryOptions(), Model.MemoryOptions(expertCache: .minimum)] {
            let model = try Model(path: path, options: ExecutorOptions(threads: 2), memory: memory)
            let aloneA = try model.logits(tokens: a)
            let aloneB = try model.generate(tokens: b, maxNewTokens: 8)
            let label = memory.expertCache == nil ? "resident" : "paged"
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask { XCTAssertTrue(try model.logits(tokens: a) == aloneA, "\(label): logits differ") }
                    group.addTask { XCTAssertEqual(try model.generate(tokens: b, maxNewTokens: 8), aloneB, label) }
                }
                try await group.waitForAll()
            }
        }
    }

    /// An operation may call the model again from the same thread (the lock is recursive).
    func testNestedUseOnOneThreadDoesNotDeadlock() throws {
        let model = try Model(path: Fixtures.path("olmoe/model-q8_0.gguf"), options: ExecutorOptions(threads: 2))
        let tokens = try Fixtures.manifest("olmoe").sequences[1]
        let outside = try model.logits(tokens: tokens)
        let inside = try model.withExclusiveAccess { try model.withExclusiveAccess { try model.logits(tokens: tokens) } }
        XCTAssertTrue(inside == outside)
    }
}
