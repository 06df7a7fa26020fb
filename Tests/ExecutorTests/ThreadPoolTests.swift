import Foundation
import SwiftMoE
import XCTest

final class ThreadPoolTests: XCTestCase {
    func testEveryIndexRunsOnceAndPoolsComeAndGo() {
        for threads in [1, 2, 3, 8] {
            for _ in 0..<20 {
                let pool = ThreadPool(threads: threads)
                let counts = UnsafeMutablePointer<Int>.allocate(capacity: 1000)
                counts.initialize(repeating: 0, count: 1000)
                pool.parallelFor(1000, grain: 7) { range, _ in
                    for i in range { counts[i] += 1 }
                }
                XCTAssertTrue((0..<1000).allSatisfy { counts[$0] == 1 }, "threads \(threads)")
                counts.deallocate()
            }
        }
    }

    func testManySmallRegions() {
        let pool = ThreadPool(threads: 2)
        var total = 0
        let lock = NSLock()
        for _ in 0..<5000 {
            pool.run { worker in
                lock.lock()
                total += worker + 1
                lock.unlock()
            }
        }
        XCTAssertEqual(total, 5000 * 3)
    }

    /// Regions started from two threads at once take turns: each thread's every index runs
    /// exactly once per region.
    func testRegionsFromTwoThreadsTakeTurns() {
        let pool = ThreadPool(threads: 2)
        let regions = 20000, width = 64
        let counts = [Counts(width), Counts(width)]
        let group = DispatchGroup()
        for c in counts {
            group.enter()
            Thread {
                for _ in 0..<regions {
                    pool.parallelFor(width, grain: 1) { range, _ in
                        for i in range { c.values[i] += 1 }
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        for (t, c) in counts.enumerated() {
            XCTAssertEqual(Array(UnsafeBufferPointer(start: c.values, count: width)), Array(repeating: regions, count: width), "thread \(t)")
        }
    }

    /// Counters of one thread's regions. `@unchecked Sendable`: only that thread's regions write
    /// them (each index from one worker per region, regions ordered by the pool), and the test
    /// reads them after joining the thread.
    final class Counts: @unchecked Sendable {
        let values: UnsafeMutablePointer<Int>
        init(_ n: Int) {
            values = .allocate(capacity: n)
            values.initialize(repeating: 0, count: n)
        }
        deinit { values.deallocate() }
    }
}
