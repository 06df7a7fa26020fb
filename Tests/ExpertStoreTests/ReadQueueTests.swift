import ExpertStore
import Foundation
import TestSupport
import XCTest

/// Reads in flight: a read cut into pieces at several depths gives the bytes one plain read gives.
final class ReadQueueTests: XCTestCase {
    func testPiecesCoverTheRangeAlignedAndBounded() {
        let queue = ReadQueue(depth: 4)
        defer { queue.stop() }
        for length in [1, 4096, 65_536, 300_000, 1 << 20, 5_000_001] {
            let parts = queue.pieces(offset: 8192, length: length)
            XCTAssertLessThanOrEqual(parts.count, 4)
            XCTAssertEqual(parts.first?.offset, 8192)
            XCTAssertEqual(parts.map(\.length).reduce(0, +), length)
            for (a, b) in zip(parts, parts.dropFirst()) {
                XCTAssertEqual(a.offset + a.length, b.offset, "contiguous")
                XCTAssertEqual(a.length % DirectReader.alignment, 0, "every piece but the last is aligned")
            }
        }
        XCTAssertEqual(queue.pieces(offset: 0, length: 1 << 20).count, 4)
        XCTAssertEqual(queue.pieces(offset: 0, length: ReadQueue.minimumPiece).count, 1, "short reads are not split")
    }

    func testSplitReadsMatchAPlainRead() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("data.bin")
        var state: UInt64 = 3
        let bytes = (0..<(3 << 20) + 12_345).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 40)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reader = try DirectReader(path: path)
        let length = 2 << 20
        for depth in [1, 2, 4, 7] {
            let queue = ReadQueue(depth: depth)
            defer { queue.stop() }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: DirectReader.alignment)
            defer { buffer.deallocate() }
            for offset in [0, 4096, 1 << 20] {
                try queue.read(reader, offset: offset, length: length, into: buffer)
                XCTAssertTrue(Array(UnsafeRawBufferPointer(start: buffer, count: length)) == Array(bytes[offset..<offset + length]), "depth \(depth), offset \(offset)")
            }
            // Concurrent callers share the workers.
            let failures = Counter()
            DispatchQueue.concurrentPerform(iterations: 3) { i in
                let b = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: DirectReader.alignment)
                defer { b.deallocate() }
                let start = i * 4096 * 16
                do {
                    try queue.read(reader, offset: start, length: 1 << 20, into: b)
                    if Array(UnsafeRawBufferPointer(start: b, count: 1 << 20)) != Array(bytes[start..<start + (1 << 20)]) { failures.add() }
                } catch {
                    failures.add()
                }
            }
            XCTAssertEqual(failures.value, 0, "concurrent callers, depth \(depth)")
        }
        let probeBuffer = UnsafeMutableRawPointer.allocate(byteCount: 4 << 16, alignment: DirectReader.alignment)
        defer { probeBuffer.deallocate() }
        let bandwidth = try XCTUnwrap(DiskProbe.bandwidth(path: path, depth: 4, piece: 1 << 16, buffer: probeBuffer))
        XCTAssertGreaterThan(bandwidth, 0)
        XCTAssertEqual(DiskProbe.bandwidth(path: path, depth: 4, piece: 1 << 16, buffer: probeBuffer), bandwidth, "cached per process")
        XCTAssertNil(DiskProbe.bandwidth(path: dir.path("missing"), depth: 4, piece: 1 << 16, buffer: probeBuffer))
    }
}

extension ReadQueueTests {
    /// Several requests in one queue (an expert's three slabs): every request's bytes match the
    /// file, `completed` sees them in order, each only after its own bytes have landed, and an
    /// error in `completed` stops later callbacks but not the reads already queued.
    func testRequestsShareOneQueueAndCompleteInOrder() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("slabs.bin")
        var state: UInt64 = 11
        let bytes = (0..<(4 << 20)).map { _ -> UInt8 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 40)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reader = try DirectReader(path: path)
        let ranges = [(offset: 3 << 20, length: 700 << 10), (offset: 0, length: 1 << 20), (offset: 2 << 20, length: 4096)]
        let total = ranges.reduce(0) { $0 + $1.length }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: DirectReader.alignment)
        defer { buffer.deallocate() }
        // Where each request lands in the buffer: one after another.
        let at = ranges.indices.map { i in ranges[..<i].reduce(0) { $0 + $1.length } }
        for depth in [1, 3, 4] {
            let queue = ReadQueue(depth: depth)
            defer { queue.stop() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: total)
            let requests = zip(ranges, at).map { ReadQueue.Request(reader: reader, offset: $0.offset, length: $0.length, buffer: buffer + $1) }
            var seen: [Int] = []
            try queue.read(requests) { i in
                seen.append(i)
                let r = ranges[i]
                XCTAssertTrue(Array(UnsafeRawBufferPointer(start: buffer + at[i], count: r.length)) == Array(bytes[r.offset..<r.offset + r.length]),
                              "depth \(depth): request \(i) complete when reported")
            }
            XCTAssertEqual(seen, [0, 1, 2], "depth \(depth)")
            struct Stop: Error {}
            var calls = 0
            XCTAssertThrowsError(try queue.read(requests) { _ in
                calls += 1
                throw Stop()
            }) { XCTAssertTrue($0 is Stop) }
            XCTAssertEqual(calls, 1, "no callback after a failure")
        }
    }
}

/// Counts failures seen on other threads.
private final class Counter: @unchecked Sendable {  // `count` only under `lock`
    private let lock = NSLock()
    private var count = 0
    func add() {
        lock.lock()
        count += 1
        lock.unlock()
    }
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}
