import Foundation
import Synchronization

/// A fixed set of worker threads that run one parallel region at a time.
///
/// Workers are created once and live as long as the pool; a region costs an atomic
/// increment and, only if workers went to sleep, a condition-variable broadcast. Idle
/// workers spin briefly (decode issues hundreds of small regions per token) and then sleep.
/// The calling thread takes part as worker 0, so `threads == 1` runs everything inline.
///
/// `@unchecked Sendable`: its only mutable state is `Shared.job`, and `run` holds `region`
/// while it sets and clears it, so callers on different threads take turns; workers read the
/// job only between a region's publish and its completion (see `Shared`).
public final class ThreadPool: @unchecked Sendable {
    public let threads: Int
    private let shared = Shared()
    private let finished = DispatchGroup()
    /// One parallel region at a time. An `NSLock` (a pthread mutex), not `Synchronization.Mutex`:
    /// ThreadSanitizer sees pthread locks, but not `Mutex`'s futex on Linux, and reported the
    /// hand-over of `Shared.job` between two callers taking turns as a race (tools/sanitize.sh).
    private let region = NSLock()

    /// Iterations a worker spins on an idle pool before sleeping (tens of microseconds).
    static let spinLimit = 200_000

    /// State the workers share with the pool; the workers keep it alive, not the pool.
    ///
    /// `@unchecked Sendable`: `job` is written only by the thread running a region, before
    /// `publish()` bumps `generation` (release) and after `remaining` has dropped to zero
    /// (acquire); a worker reads it only after seeing the new generation (acquire) and before
    /// it decrements `remaining` (release). The counters are atomics.
    private final class Shared: @unchecked Sendable {
        let generation = Atomic<Int>(0)
        let remaining = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
        /// The next chunk of the running `parallelFor`; `run` resets it before publishing a region.
        let nextChunk = Atomic<Int>(0)
        let condition = NSCondition()
        var job: ((Int) -> Void)?

        func publish() {
            condition.lock()
            generation.add(1, ordering: .releasing)
            condition.broadcast()
            condition.unlock()
        }

        func workerLoop(index: Int) {
            var seen = 0
            while true {
                var spins = 0
                while generation.load(ordering: .acquiring) == seen {
                    spins += 1
                    if spins >= ThreadPool.spinLimit {
                        condition.lock()
                        while generation.load(ordering: .acquiring) == seen { condition.wait() }
                        condition.unlock()
                        break
                    }
                }
                seen = generation.load(ordering: .acquiring)
                if stopping.load(ordering: .acquiring) { return }
                job?(index)
                remaining.subtract(1, ordering: .releasing)
            }
        }
    }

    /// - Parameter threads: total threads including the caller; at least 1.
    public init(threads: Int) {
        self.threads = max(1, threads)
        for index in 1..<self.threads {
            finished.enter()
            let shared = self.shared, finished = self.finished
            let thread = Thread {
                shared.workerLoop(index: index)
                finished.leave()
            }
            thread.name = "moe-worker-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        shared.stopping.store(true, ordering: .releasing)
        shared.publish()
        finished.wait()
    }

    /// The number of threads a default pool uses: the cores this process may run on.
    public static var defaultThreadCount: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Runs `body(worker)` once on each of the `threads` workers and returns when all are done.
    /// Regions started from several threads run one after the other; `body` must not start
    /// another region on the same pool.
    public func run(_ body: (Int) -> Void) {
        if threads == 1 {
            body(0)
            return
        }
        region.withLock {
            withoutActuallyEscaping(body) { body in
                shared.job = body
                shared.remaining.store(threads - 1, ordering: .relaxed)
                shared.nextChunk.store(0, ordering: .relaxed)
                shared.publish()
                body(0)
                while shared.remaining.load(ordering: .acquiring) > 0 {}
                shared.job = nil
            }
        }
    }

    /// Chunks per thread that `parallelFor` hands out: enough that a worker which starts late
    /// (woken from sleep) or runs slow (a shared core) leaves its share to the others.
    static let chunksPerThread = 4

    /// Splits `0..<count` into contiguous chunks (of at least `grain`, a multiple of it) and runs
    /// `body(range, worker)` on each, the workers taking the next chunk as they finish one.
    /// Every index is in exactly one call; a worker's calls run one after another, so a
    /// per-worker scratch buffer is never shared. Fewer workers take part if the work is small.
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard count > 0 else { return }
        let grain = max(grain, 1)
        let parts = min(threads, max(1, count / grain))
        if parts == 1 {
            body(0..<count, 0)
            return
        }
        let target = max(grain, count / (parts * Self.chunksPerThread))
        let chunk = (target + grain - 1) / grain * grain
        let chunks = (count + chunk - 1) / chunk
        let shared = self.shared  // run() resets its chunk counter inside the region
        run { worker in
            guard worker < parts else { return }
            while true {
                let c = shared.nextChunk.add(1, ordering: .relaxed).oldValue
                guard c < chunks else { return }
                body(c * chunk..<min(count, (c + 1) * chunk), worker)
            }
        }
    }
}
