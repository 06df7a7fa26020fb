import ExpertStore
import XCTest

/// Cache policies and Belady's MIN on access sequences worked out by hand.
final class PolicyTests: XCTestCase {
    let a = ExpertKey(layer: 0, expert: 0), b = ExpertKey(layer: 0, expert: 1), c = ExpertKey(layer: 0, expert: 2)

    func testLRU() {
        // A B A C B, capacity 2: C evicts B (A was used more recently), then B evicts A.
        let r = CacheSimulator.run([a, b, a, c, b], capacity: 2, policy: LRUPolicy())
        XCTAssertEqual(r.outcomes, [false, false, true, false, false])
        XCTAssertEqual(r.evictions, [b, a])
    }

    func testFIFO() {
        // C evicts A (inserted first) even though A was just used; then B hits.
        let r = CacheSimulator.run([a, b, a, c, b], capacity: 2, policy: FIFOPolicy())
        XCTAssertEqual(r.outcomes, [false, false, true, false, true])
        XCTAssertEqual(r.evictions, [a])
    }

    func testLFU() {
        // Counts when C arrives: A 2, B 1 → evict B. When B returns (now 2): A 2, C 1 → evict C.
        let r = CacheSimulator.run([a, b, a, c, b], capacity: 2, policy: LFUPolicy())
        XCTAssertEqual(r.outcomes, [false, false, true, false, false])
        XCTAssertEqual(r.evictions, [b, c])
    }

    func testDecayedLFUForgetsOldPopularity() {
        // A A A A B B C with a half-life of 1 request: when C arrives, A's count is
        // (1/8 + 1/4 + 1/2 + 1) / 8 = 0.234 and B's (1/2 + 1) / 2 = 0.75 → evict A, where LFU
        // (A 4, B 2) evicts B.
        let sequence = [a, a, a, a, b, b, c]
        XCTAssertEqual(CacheSimulator.run(sequence, capacity: 2, policy: DecayedLFUPolicy(halfLife: 1)).evictions, [a])
        XCTAssertEqual(CacheSimulator.run(sequence, capacity: 2, policy: LFUPolicy()).evictions, [b])
        // A long half-life weighs counts as LFU does.
        XCTAssertEqual(CacheSimulator.run(sequence, capacity: 2, policy: DecayedLFUPolicy(halfLife: 1000)).evictions, [b])
    }

    func testEdgeMoEPrefersExpertsFarthestAhead() {
        let l0 = ExpertKey(layer: 0, expert: 0), l1 = ExpertKey(layer: 1, expert: 0), l2 = ExpertKey(layer: 2, expert: 0)
        let l3 = ExpertKey(layer: 3, expert: 0), l0b = ExpertKey(layer: 0, expert: 1)
        // 4 layers, capacity 2, every count 1. At layer 2: L0 is 2 ahead (1/2), L1 is 3 ahead (1/3) → evict L1.
        // At layer 3: L0 is 1 ahead (1/1), L2 is 3 ahead (1/3) → evict L2.
        // At layer 0: L0E0 is the current layer (distance 0, kept), L3 is 3 ahead → evict L3.
        let r = CacheSimulator.run([l0, l1, l2, l3, l0b], capacity: 2, policy: EdgeMoEPolicy(layerCount: 4))
        XCTAssertEqual(r.evictions, [l1, l2, l3])
    }

    func testEdgeMoEWeighsFrequency() {
        let l0 = ExpertKey(layer: 0, expert: 0), l1 = ExpertKey(layer: 1, expert: 0), l2 = ExpertKey(layer: 2, expert: 0)
        // L1 used 3 times: at layer 2 its score is 3/3 = 1 > L0's 1/2, so L0 goes although it is nearer.
        let r = CacheSimulator.run([l1, l1, l1, l0, l2], capacity: 2, policy: EdgeMoEPolicy(layerCount: 4))
        XCTAssertEqual(r.evictions, [l0])
        let policy = EdgeMoEPolicy(layerCount: 4)
        XCTAssertEqual(policy.score(l2, currentLayer: 2), .infinity)
    }

    func testBeladyTextbookSequence() {
        // The classic reference string 1 2 3 4 1 2 5 1 2 3 4 5 with 3 frames: MIN faults 7 times.
        let keys = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5].map { ExpertKey(layer: 0, expert: $0) }
        let r = CacheSimulator.belady(keys, capacity: 3)
        XCTAssertEqual(r.misses, 7)
        XCTAssertEqual(r.hits, 5)
        // Belady evicts 3 at the first full miss (4), since 1 and 2 return first.
        XCTAssertEqual(r.evictions.first, ExpertKey(layer: 0, expert: 3))
        // No policy beats it on the same sequence.
        for policy in [LRUPolicy(), LFUPolicy(), FIFOPolicy(), EdgeMoEPolicy(layerCount: 1)] as [CachePolicy] {
            XCTAssertGreaterThanOrEqual(CacheSimulator.run(keys, capacity: 3, policy: policy).misses, r.misses, policy.name)
        }
        // FIFO on the same string famously faults 9 times with 3 frames.
        XCTAssertEqual(CacheSimulator.run(keys, capacity: 3, policy: FIFOPolicy()).misses, 9)
        XCTAssertEqual(CacheSimulator.run(keys, capacity: 3, policy: LRUPolicy()).misses, 10)
    }

    func testPoolArenaInvariantsUnderRandomTraffic() throws {
        let pool = try ExpertPool(capacity: 64 * 4096)
        var live: [(Int, Int)] = []
        var state: UInt64 = 1
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33)
        }
        for _ in 0..<5000 {
            if live.isEmpty || next() % 3 != 0 {
                let size = 1 + next() % (6 * 4096)
                if let offset = pool.allocate(size) {
                    XCTAssertEqual(offset % ExpertPool.alignment, 0)
                    XCTAssertLessThanOrEqual(offset + ExpertPool.rounded(size), pool.capacity)
                    for (o, s) in live { XCTAssertTrue(offset + ExpertPool.rounded(size) <= o || o + ExpertPool.rounded(s) <= offset, "overlap") }
                    live.append((offset, size))
                }
            } else {
                let (o, s) = live.remove(at: next() % live.count)
                pool.release(offset: o, size: s)
            }
            XCTAssertTrue(pool.checkInvariants())
            XCTAssertLessThanOrEqual(pool.usedBytes, pool.capacity)
        }
        for (o, s) in live { pool.release(offset: o, size: s) }
        XCTAssertEqual(pool.usedBytes, 0)
        XCTAssertEqual(pool.largestFreeBlock, pool.capacity, "every byte returned and coalesced")
    }
}
