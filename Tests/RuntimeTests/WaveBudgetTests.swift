import Foundation
import TestSupport
import XCTest

/// Prefill in waves under `--memory` (docs/design.md §5): a real `moe generate` whose prompt spans
/// several chunks, with the loader thread reading ahead, stays under its budget on a model whose
/// experts are three times the budget (MemoryBudgetTests' model).
final class WaveBudgetTests: XCTestCase {
    func testChunkedPrefillWithReadAheadStaysUnderBudget() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("big.gguf")
        _ = try MemoryBudgetTests.makeModel(at: path)
        MemoryBudgetTests.dropFromPageCache(path)
        let prompt = (1...48).map(String.init).joined(separator: ",")
        let budget = MemoryBudgetTests.budget
        let r = try Fixtures.runMoe(["generate", path, "--tokens", prompt, "--max-new", "4", "--memory", "\(budget)", "--context", "64",
                                     "--threads", "2", "--prompt-chunk", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let peak = try XCTUnwrap(MemoryBudgetTests.peakBytes(r.stderr), r.stderr)
        XCTAssertLessThanOrEqual(peak, budget, "peak RSS \(peak) over the budget \(budget)")
        XCTAssertTrue(r.stderr.contains("misses"), r.stderr)
    }
}
