import Foundation
import ModelFormats

/// Keeps several positioned reads in flight: a read of one expert (a `.moe` record or a GGUF
/// slab) is cut into up to ``depth`` aligned pieces, read at once by ``depth`` − 1 worker
/// threads and the calling thread. Direct reads of a few MiB at queue depth 1 leave a virtual
/// or NVMe disk idle between requests; at depth 4 they approach its bandwidth.
///
/// The pieces land in the caller's buffer, so the queue allocates no buffers (the memory plan
/// is unchanged). Prefetch loaders and demand loads share the same workers; a caller whose
/// pieces are still queued reads them itself, so nobody waits behind another load's pieces.
///
/// `@unchecked Sendable`: `jobs`, `stopping` and every ``Batch``'s fields are read and written
/// only with `condition` locked; a job's buffer range belongs to that job alone until its batch
/// counts it done.
public final class ReadQueue: @unchecked Sendable {
    /// The default queue depth (`--read-depth`).
    public static let defaultDepth = 4
    /// Pieces are at least this long (shorter reads are not worth a hand-off).
    public static let minimumPiece = 64 << 10
    public let depth: Int
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var stopping = false

    private final class Batch {
        var remaining: Int
        var error: Error?
        init(remaining: Int) { self.remaining = remaining }
    }

    private struct Job {
        let reader: DirectReader
        let offset: Int
        let length: Int
        let buffer: UnsafeMutableRawPointer
        let batch: Batch
    }

    /// Starts `depth − 1` worker threads (none for depth 1).
    public init(depth: Int) {
        self.depth = max(1, depth)
        for i in 0..<(self.depth - 1) {
            let thread = Thread { [self] in
                while let job = self.next() { self.run(job) }
            }
            thread.name = "moe-read-\(i)"
            thread.start()
        }
    }

    /// Lets the workers exit once the queue is empty (the owner calls this when it goes away).
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// The pieces `[offset, offset + length)` is cut into: at most ``depth``, each a multiple of
    /// the alignment except the last, none shorter than ``minimumPiece`` unless the read is.
    public func pieces(offset: Int, length: Int) -> [(offset: Int, length: Int)] {
        let a = DirectReader.alignment
        let wanted = (length + depth - 1) / depth
        let piece = max(ReadQueue.minimumPiece, (wanted + a - 1) / a * a)
        var out: [(Int, Int)] = []
        var done = 0
        while done < length {
            let n = min(piece, length - done)
            out.append((offset + done, n))
            done += n
        }
        return out.isEmpty ? [(offset, 0)] : out
    }

    /// One positioned read: `length` bytes at `offset` of `reader`'s file into `buffer`.
    public struct Request {
        public var reader: DirectReader
        public var offset: Int
        public var length: Int
        public var buffer: UnsafeMutableRawPointer
        public init(reader: DirectReader, offset: Int, length: Int, buffer: UnsafeMutableRawPointer) {
            self.reader = reader
            self.offset = offset
            self.length = length
            self.buffer = buffer
        }
    }

    /// Reads `length` bytes at `offset` of `reader`'s file into `buffer` with up to ``depth``
    /// pieces in flight (the same alignment rules as ``DirectReader/read(offset:length:into:)``).
    public func read(_ reader: DirectReader, offset: Int, length: Int, into buffer: UnsafeMutableRawPointer) throws {
        try read([Request(reader: reader, offset: offset, length: length, buffer: buffer)])
    }

    /// Reads every request with the pieces of all of them in one queue, so the disk sees
    /// ``depth`` reads in flight across request boundaries (an expert's three GGUF slabs, or
    /// several experts), not a pause at the end of each. `completed(i)` runs on the calling
    /// thread as soon as requests `0…i` have all landed, in order — while the workers read the
    /// later ones (a caller copies a finished slab out of its staging buffer there). Pieces of
    /// these requests nobody has taken yet are read by the caller itself. The first error thrown
    /// (by a read or by `completed`) is rethrown once every piece queued here is done.
    public func read(_ requests: [Request], completed: (Int) throws -> Void = { _ in }) throws {
        if depth == 1 || requests.allSatisfy({ pieces(offset: $0.offset, length: $0.length).count <= 1 }) && requests.count <= 1 {
            for (i, r) in requests.enumerated() {
                try r.reader.read(offset: r.offset, length: r.length, into: r.buffer)
                try completed(i)
            }
            return
        }
        let batches = requests.map { r in Batch(remaining: pieces(offset: r.offset, length: r.length).count) }
        condition.lock()
        for (r, batch) in zip(requests, batches) {
            for p in pieces(offset: r.offset, length: r.length) {
                jobs.append(Job(reader: r.reader, offset: p.offset, length: p.length, buffer: r.buffer + (p.offset - r.offset), batch: batch))
            }
        }
        condition.broadcast()
        var next = 0
        var failure: Error?
        while next < batches.count || batches.contains(where: { $0.remaining > 0 }) {
            if next < batches.count, batches[next].remaining == 0 {
                let error = batches[next].error
                condition.unlock()
                if failure == nil, let error { failure = error }
                if failure == nil {
                    do { try completed(next) } catch { failure = error }
                }
                next += 1
                condition.lock()
            } else if let i = jobs.firstIndex(where: { job in batches.contains { $0 === job.batch } }) {
                // Help with these requests' pieces nobody has taken yet (earliest first).
                let job = jobs.remove(at: i)
                condition.unlock()
                run(job)
                condition.lock()
            } else {
                condition.wait()
            }
        }
        condition.unlock()
        if let failure { throw failure }
    }

    private func next() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty {
            if stopping { return nil }
            condition.wait()
        }
        return jobs.removeFirst()
    }

    private func run(_ job: Job) {
        var failure: Error?
        do { try job.reader.read(offset: job.offset, length: job.length, into: job.buffer) } catch { failure = error }
        condition.lock()
        job.batch.remaining -= 1
        if job.batch.error == nil { job.batch.error = failure }
        condition.broadcast()
        condition.unlock()
    }
}

/// The disk's direct-read bandwidth at a queue depth, measured once per file and depth in a
/// process by reading part of the file itself (`depth` threads, each reading pieces of the
/// given size at spread-out aligned offsets) — the yardstick for the expert store's reads.
public enum DiskProbe {
    private static let lock = NSLock()
    /// Only under `lock`.
    nonisolated(unsafe) private static var cache: [String: Double] = [:]

    /// Bytes per second; reads at most `limit` bytes (less for a smaller file) into `buffer`,
    /// which must hold `depth × piece` bytes, aligned for direct I/O. Nil if the file cannot be read.
    public static func bandwidth(path: String, depth: Int, piece: Int, buffer: UnsafeMutableRawPointer, limit: Int = 64 << 20) -> Double? {
        let key = "\(path)#\(depth)#\(piece)"
        lock.lock()
        if let cached = cache[key] {
            lock.unlock()
            return cached
        }
        lock.unlock()
        guard let reader = try? DirectReader(path: path),
              let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue,
              piece > 0, size >= piece else { return nil }
        let a = DirectReader.alignment
        let slots = max(1, (size - piece) / a)
        let count = max(depth, min(limit, size) / piece)
        // Offsets spread over the file by a fixed stride (coprime-ish), so no two reads are adjacent.
        let offsets = (0..<count).map { i in (i &* 7919 % slots) * a }
        let next = ManagedIndex()
        let failed = ManagedIndex()
        let done = DispatchSemaphore(value: 0)
        let workers = max(1, depth)
        let start = DispatchTime.now().uptimeNanoseconds
        // Threads, not concurrentPerform: blocking reads must all be in flight, whatever the core count.
        for worker in 0..<workers {
            // Each thread writes only its own `piece` bytes of the buffer.
            nonisolated(unsafe) let destination = buffer + worker * piece
            Thread {
                while let i = next.take(below: count) {
                    if (try? reader.read(offset: offsets[i], length: piece, into: destination)) == nil { _ = failed.take(below: Int.max) }
                }
                done.signal()
            }.start()
        }
        for _ in 0..<workers { done.wait() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        guard failed.count == 0, seconds > 0 else { return nil }
        let result = Double(count * piece) / seconds
        lock.lock()
        cache[key] = result
        lock.unlock()
        return result
    }

    /// A counter shared by the probe's threads.
    private final class ManagedIndex: @unchecked Sendable {  // `value` only under `lock`
        private let lock = NSLock()
        private var value = 0
        var count: Int {
            lock.lock()
            defer { lock.unlock() }
            return value
        }
        func take(below limit: Int) -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard value < limit else { return nil }
            value += 1
            return value - 1
        }
    }
}
