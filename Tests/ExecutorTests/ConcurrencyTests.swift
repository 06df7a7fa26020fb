import Foundation
import Synchronization
import SwiftMoE
import TestSupport
import XCTest

/// Two tasks using one transformer at once: their passes are serialized (or, in reject mode,
/// the second is refused with a typed error), and each gets exactly the logits it gets alone.
final class ConcurrencyTests: XCTestCase {
    let fixture = Fixtures.path("qwen3moe/model-q8_0.gguf")
    let demo = Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path

    /// A prompt and `steps` greedy decode steps on a fresh cache: the last logits of every pass.
    static func generate(_ t: Transformer, prompt: [Int], steps: Int) throws -> [[Float]] {
        let cache = t.makeCache(maxPositions: prompt.count + steps)
        var out = [try t.forward(tokens: prompt, cache: cache, logits: .last)]
        for _ in 0..<steps {
            out.append(try t.forward(tokens: [Model.argmax(out.last!)], cache: cache, logits: .last))
        }
        return out
    }

    func testConcurrentTasksGetTheLogitsOfSequentialRuns() async throws {
        let resident = try Model(path: fixture, options: ExecutorOptions(threads: 2))
        // A paged store with a lookahead predictor: the prefetch driver runs in every decode pass.
        let paged = try Model(path: demo, options: ExecutorOptions(threads: 2),
                              memory: Model.MemoryOptions(prefetch: .lookahead, expertCache: .fraction(0.25)))
        let prompts = [[3, 17, 42, 99, 128, 7, 250, 11], [200, 5, 77, 31, 2, 190]]
        for model in [resident, paged] {
            let t = model.transformer
            let alone = try prompts.map { try Self.generate(t, prompt: $0, steps: 12) }
            XCTAssertNotEqual(alone[0].last, alone[1].last)
            for round in 0..<4 {
                let together = try await withThrowingTaskGroup(of: (Int, [[Float]]).self) { group in
                    for (i, prompt) in prompts.enumerated() {
                        group.addTask { (i, try Self.generate(t, prompt: prompt, steps: 12)) }
                    }
                    var results: [Int: [[Float]]] = [:]
                    for try await (i, logits) in group { results[i] = logits }
                    return results
                }
                for i in prompts.indices {
                    XCTAssertTrue(together[i] == alone[i], "\(model.source.path) round \(round): sequence \(i) differs when run beside the other")
                }
            }
        }
        XCTAssertGreaterThan(paged.transformer.predictionStats.predicted.values.reduce(0, +), 0, "the predictor never ran")
    }

    /// A second pass started while the first is inside its forward call (held in the routing
    /// observer) does not finish before the first does.
    func testASecondPassWaitsForTheFirst() throws {
        let t = try Model(path: fixture, options: ExecutorOptions(threads: 2)).transformer
        let first = [3, 17, 42, 99, 128], second = [200, 5, 77, 31]
        let expectedFirst = try t.forward(tokens: first, cache: t.makeCache())
        let expectedSecond = try t.forward(tokens: second, cache: t.makeCache())

        let outcome = Outcome()
        let started = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        var finishedWhileFirstRan: Bool? = nil
        let logits = try t.forward(tokens: first, cache: t.makeCache()) { _, _, _ in
            guard finishedWhileFirstRan == nil else { return }
            Self.spawn(t, second, outcome, started: started, done: done)
            started.wait()
            Thread.sleep(forTimeInterval: 0.2)
            finishedWhileFirstRan = outcome.value.withLock { $0 != nil }
        }
        done.wait()
        XCTAssertEqual(finishedWhileFirstRan, false, "the second pass ran while the first held the transformer")
        XCTAssertTrue(logits == expectedFirst)
        XCTAssertTrue(try outcome.result().get() == expectedSecond)
    }

    /// In reject mode the second pass throws `ExecutorError.busy` at once; after the first
    /// finishes, the same call succeeds.
    func testRejectModeRefusesASecondPass() throws {
        let t = try Model(path: fixture, options: ExecutorOptions(threads: 2, concurrentUse: .reject)).transformer
        let first = [3, 17, 42, 99, 128], second = [200, 5, 77, 31]
        let expectedSecond = try t.forward(tokens: second, cache: t.makeCache())

        let outcome = Outcome()
        let started = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        var spawned = false
        _ = try t.forward(tokens: first, cache: t.makeCache()) { _, _, _ in
            guard !spawned else { return }
            spawned = true
            Self.spawn(t, second, outcome, started: started, done: done)
            done.wait()
        }
        XCTAssertTrue(spawned)
        XCTAssertThrowsError(try outcome.result().get()) { XCTAssertEqual($0 as? ExecutorError, .busy) }

        let again = Outcome()
        Self.spawn(t, second, again, started: started, done: done)
        done.wait()
        XCTAssertTrue(try again.result().get() == expectedSecond)
    }

    /// The result of a forward pass run on another thread.
    final class Outcome: Sendable {
        let value = Mutex<Result<[Float], any Error>?>(nil)

        func result() throws -> Result<[Float], any Error> {
            guard let r = value.withLock({ $0 }) else { throw CocoaError(.featureUnsupported) }
            return r
        }
    }

    /// Runs `tokens` on a fresh cache on a new thread; signals `started` just before the call
    /// and `done` after storing the outcome.
    static func spawn(_ t: Transformer, _ tokens: [Int], _ outcome: Outcome, started: DispatchSemaphore, done: DispatchSemaphore) {
        Thread {
            let cache = t.makeCache()
            started.signal()
            let r = Result { try t.forward(tokens: tokens, cache: cache) }
            outcome.value.withLock { $0 = r }
            done.signal()
        }.start()
    }
}
