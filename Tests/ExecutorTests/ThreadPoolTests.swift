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

    /// `parallelFor` hands out chunks: each starts at a multiple of the grain, a worker's calls
    /// never overlap (its scratch is its own), and a worker that stalls leaves the rest of the
    /// chunks to the others instead of holding the region up for its fixed share.
    func testChunksFollowTheGrainAndAStalledWorkerLeavesItsShare() {
        let pool = ThreadPool(threads: 2)
        let count = 1000, grain = 8
        let lock = NSLock()
        var calls: [(range: Range<Int>, worker: Int)] = []
        var busy = [false, false], overlapped = false, stalled = false
        pool.parallelFor(count, grain: grain) { range, worker in
            lock.lock()
            if busy[worker] { overlapped = true }
            busy[worker] = true
            calls.append((range, worker))
            let stall = worker == 1 && !stalled
            if stall { stalled = true }
            lock.unlock()
            if stall { Thread.sleep(forTimeInterval: 0.2) }
            lock.lock()
            busy[worker] = false
            lock.unlock()
        }
        XCTAssertFalse(overlapped, "a worker ran two chunks at once")
        XCTAssertEqual(calls.map(\.range.count).reduce(0, +), count)
        XCTAssertTrue(calls.allSatisfy { $0.range.lowerBound % grain == 0 && !$0.range.isEmpty })
        XCTAssertGreaterThan(calls.count, 2, "more chunks than workers")
        // Worker 1 slept 0.2 s in its first chunk (if it got one at all); worker 0 took the rest.
        XCTAssertLessThanOrEqual(calls.filter { $0.worker == 1 }.count, 1)
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
