import ExpertStore
import XCTest

/// `CacheSimulator.replay` with prefetch requests, on a sequence worked out by hand.
final class ReplayPrefetchTests: XCTestCase {
    let a = ExpertKey(layer: 0, expert: 0), b = ExpertKey(layer: 0, expert: 1)
    let c = ExpertKey(layer: 1, expert: 0), d = ExpertKey(layer: 1, expert: 1)

    func sequence() -> AccessSequence {
        var s = AccessSequence()
        s.keys = [a, c, b, d, a]
        s.batches = [0, 1, 2, 3, 4]
        // While layer 0 runs the predictor asks for c then d; later, while layer 1 runs, for d.
        s.prefetches = [.init(before: 1, layer: 0, keys: [c, d]), .init(before: 3, layer: 1, keys: [d])]
        return s
    }

    func testPrefetchesAreServedAsTheStoreServesThem() {
        // Capacity 3, so the unused-prefetch cap is 1 (half the pool):
        // a misses. Request 1: c is loaded; d would be a second unused prefetch, over the cap.
        // c hits (used). b misses (pool a c b is full). Request 2 while layer 1 runs: d needs
        // room; c is layer 1's (protected), so LRU picks between a and b: a is older → evicted.
        // d hits. a misses and evicts the LRU of c (touched 3rd), b (4th), d (6th): c.
        let r = CacheSimulator.replay(sequence(), capacity: 3, policy: LRUPolicy(), prefetch: true)
        XCTAssertEqual(r.result.outcomes, [false, true, false, true, false])
        XCTAssertEqual(r.result.evictions, [a, c])
        XCTAssertEqual([r.prefetchIssued, r.prefetchUseful, r.prefetchWasted], [2, 2, 0])
    }

    func testWithoutPrefetchTheRequestsAreIgnored() {
        // a c b fill the pool, d evicts a (LRU), and a misses again.
        let r = CacheSimulator.replay(sequence(), capacity: 3, policy: LRUPolicy(), prefetch: false)
        XCTAssertEqual(r.result.outcomes, [false, false, false, false, false])
        XCTAssertEqual(r.result.evictions, [a, c])
        XCTAssertEqual(r.prefetchIssued, 0)
    }

    func testAnUnusedPrefetchEvictedIsWastedAndTheCapHolds() {
        // Capacity 2, cap 1. a misses. c is prefetched into the free slot (unused: 1). b misses:
        // the pool holds a and c, nothing pinned, and a demand load may evict a landed prefetch;
        // LRU picks a (touched before c's insertion). The request for d finds one unused
        // prefetch already (the cap) and queues nothing. a misses again and evicts c, the least
        // recent, still unused: wasted.
        var s = AccessSequence()
        s.keys = [a, b, a]
        s.batches = [0, 1, 2]
        s.prefetches = [.init(before: 1, layer: 0, keys: [c]), .init(before: 2, layer: 1, keys: [d])]
        let r = CacheSimulator.replay(s, capacity: 2, policy: LRUPolicy(), prefetch: true)
        XCTAssertEqual(r.result.outcomes, [false, false, false])
        XCTAssertEqual(r.result.evictions, [a, c])
        XCTAssertEqual([r.prefetchIssued, r.prefetchUseful, r.prefetchWasted], [1, 0, 1])
    }
}
