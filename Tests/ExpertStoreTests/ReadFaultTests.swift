import ExpertStore
import Foundation
import SwiftMoE
import Synchronization
import TestSupport
import XCTest

/// Injected I/O faults on the paged store's reads (docs/reliability.md, fault matrix): reads
/// that fail, come back short or slow, files truncated or overwritten while a store uses them.
/// The seam (``DirectReader/injectFaults(path:_:)``) replaces `pread` for one file only, so
/// these tests work on their own copies and cannot disturb tests running beside them.
final class ReadFaultTests: XCTestCase {
    /// A private copy of a fixture GGUF, converted to a `.moe` store too.
    func files(_ name: String = "qwen2moe") throws -> (TemporaryDirectory, gguf: String, store: String) {
        let dir = TemporaryDirectory()
        let gguf = dir.path("model.gguf")
        try FileManager.default.copyItem(atPath: Fixtures.path("\(name)/model-q8_0.gguf"), toPath: gguf)
        let store = dir.path("model.moe")
        _ = try Converter.convert(input: gguf, output: store, options: .init(plan: BitPlan(default: "keep"), compression: StoreWriter.CompressionMode.none))
        return (dir, gguf, store)
    }

    /// The byte range expert `e` of layer `l` occupies in `path` (its record, or its first slab).
    func range(of key: ExpertKey, in path: String) throws -> Range<Int> {
        let catalog = try ExpertCatalog(source: try ModelSource(path: path))
        switch try XCTUnwrap(catalog.entry(key)).location {
        case let .record(record, readLength): return record.offset..<(record.offset + readLength)
        case let .slabs(slabs): return slabs[0].offset..<(slabs[0].offset + slabs[0].length)
        }
    }

    func tinyPool(_ path: String, loaders: Int = 0) throws -> (Transformer, PagedExpertStore) {
        let source = try ModelSource(path: path)
        let catalog = try ExpertCatalog(source: source)
        let store = try PagedExpertStore(source: source, capacity: catalog.largestActiveSet(k: source.configuration.expertsPerToken) + 2 * ExpertPool.alignment,
                                         policy: .lru, loaderThreads: loaders, maxPrefetchBytes: 1 << 20)
        return (try Transformer(source: source, experts: store, options: ExecutorOptions(threads: 2)), store)
    }

    func testEIONamesLayerExpertAndFileAndLeavesTheStoreUsable() throws {
        let (dir, gguf, store) = try files()
        defer { _ = dir }
        let key = ExpertKey(layer: 1, expert: 2)
        for path in [gguf, store] {
            let bad = try range(of: key, in: path)
            DirectReader.injectFaults(path: path) { fd, buffer, count, offset in
                if offset < bad.upperBound && offset + count > bad.lowerBound {
                    errno = EIO
                    return -1
                }
                return pread(fd, buffer, count, off_t(offset))
            }
            defer { DirectReader.injectFaults(path: path, nil) }
            let paged = try PagedExpertStore(source: try ModelSource(path: path), capacity: 1 << 20, policy: .lru, loaderThreads: 1)
            defer { paged.stopLoaders() }
            XCTAssertThrowsError(try paged.withExpert(layer: 1, expert: 2) { _ in }) { error in
                let text = "\(error)"
                for part in [path, "expert 2 of layer 1", "Input/output error"] { XCTAssertTrue(text.contains(part), "\(path): \(text) lacks \(part)") }
            }
            // A prefetch that fails is dropped; the demand load that follows reports the error.
            paged.prefetch([key], currentLayer: 0)
            XCTAssertThrowsError(try paged.withExpert(layer: 1, expert: 2) { _ in }) { XCTAssertTrue("\($0)".contains("Input/output error"), "\($0)") }
            // Other experts (away from the failing blocks) still load, and the failed loads gave their pool bytes back.
            XCTAssertNoThrow(try paged.withExpert(layer: 0, expert: 0) { _ in })
            paged.evictAll()
            paged.withPool { XCTAssertEqual($0.usedBytes, 0, path) }
        }
    }

    /// A piece that fails on a worker thread fails the whole read, on the caller's thread; the
    /// queue goes on serving reads afterwards.
    func testReadQueueReportsAWorkersFailure() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("data.bin")
        let bytes = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let failing = Atomic<Bool>(true)
        DirectReader.injectFaults(path: path) { fd, buffer, count, offset in
            if failing.load(ordering: .relaxed), offset >= 1 << 20 {
                errno = EIO
                return -1
            }
            return pread(fd, buffer, count, off_t(offset))
        }
        defer { DirectReader.injectFaults(path: path, nil) }
        let reader = try DirectReader(path: path)
        let queue = ReadQueue(depth: 4)
        defer { queue.stop() }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 2 << 20, alignment: DirectReader.alignment)
        defer { buffer.deallocate() }
        XCTAssertEqual(queue.pieces(offset: 0, length: 2 << 20).count, 4)
        XCTAssertThrowsError(try queue.read(reader, offset: 0, length: 2 << 20, into: buffer)) { XCTAssertTrue("\($0)".contains("Input/output error"), "\($0)") }
        failing.store(false, ordering: .relaxed)
        try queue.read(reader, offset: 0, length: 2 << 20, into: buffer)
        XCTAssertTrue(Array(UnsafeRawBufferPointer(start: buffer, count: 2 << 20)) == bytes)
    }

    func testShortAndSlowReadsGiveTheSameLogits() throws {
        let (dir, gguf, store) = try files()
        defer { _ = dir }
        let tokens = try Fixtures.manifest("qwen2moe").sequences[2]
        let resident = try Model(path: gguf, options: ExecutorOptions(threads: 2))
        var expected: [Float] = []
        let residentCache = resident.transformer.makeCache()
        for t in tokens { expected += try resident.transformer.forward(tokens: [t], cache: residentCache) }
        let calibration = try resident.calibrate(tokens: tokens, window: 40)
        let calls = Atomic<Int>(0)
        // Short: one 4 KiB block per call (pread may return fewer bytes than asked; the reader goes on;
        // O_DIRECT reads stay block-aligned, so the short count is a whole block).
        // Slow: 1 ms before every read, so prefetches are still in flight when the pass wants them.
        let faults: [(String, DirectReader.ReadSeam)] = [
            ("short", { fd, buffer, count, offset in
                calls.add(1, ordering: .relaxed)
                return min(pread(fd, buffer, count, off_t(offset)), DirectReader.alignment)
            }),
            ("slow", { fd, buffer, count, offset in
                calls.add(1, ordering: .relaxed)
                usleep(1000)
                return pread(fd, buffer, count, off_t(offset))
            }),
        ]
        for path in [gguf, store] {
            for (label, seam) in faults {
                calls.store(0, ordering: .relaxed)
                DirectReader.injectFaults(path: path, seam)
                defer { DirectReader.injectFaults(path: path, nil) }
                let (transformer, paged) = try tinyPool(path, loaders: 2)
                defer { paged.stopLoaders() }
                transformer.predictor = try ExpertPredictor(kind: .path, depth: 2, width: 3, table: calibration)
                let cache = transformer.makeCache()
                var logits: [Float] = []
                for t in tokens { logits += try transformer.forward(tokens: [t], cache: cache) }
                XCTAssertTrue(logits == expected, "\(label) reads of \(path): logits differ")
                XCTAssertGreaterThan(calls.load(ordering: .relaxed), 0, "\(label): the seam was not used")
                XCTAssertGreaterThan(paged.metrics.misses, 0)
            }
        }
    }

    /// The end of the file before the size it had when opened: an error, never zeros as weights
    /// (a GGUF has no checksums that would catch them later).
    func testPrematureEndOfFileIsAnError() throws {
        let (dir, gguf, store) = try files()
        defer { _ = dir }
        for path in [gguf, store] {
            // The file "ends" at the block where expert 1 of layer 0 starts (block-aligned, as O_DIRECT wants).
            let cut = try range(of: ExpertKey(layer: 0, expert: 1), in: path).lowerBound / DirectReader.alignment * DirectReader.alignment
            DirectReader.injectFaults(path: path) { fd, buffer, count, offset in
                offset >= cut ? 0 : pread(fd, buffer, min(count, cut - offset), off_t(offset))
            }
            defer { DirectReader.injectFaults(path: path, nil) }
            let paged = try PagedExpertStore(source: try ModelSource(path: path), capacity: 1 << 20)
            XCTAssertThrowsError(try paged.withExpert(layer: 0, expert: 1) { _ in }) { error in
                let text = "\(error)"
                for part in [path, "expert 1 of layer 0", "truncated while in use"] { XCTAssertTrue(text.contains(part), "\(text) lacks \(part)") }
            }
        }
    }

    /// Really truncated under an open store: the experts past the new end fail with the file,
    /// layer and expert named; experts before it still load.
    func testFileTruncatedWhileInUse() throws {
        for kind in ["gguf", "store"] {
            let (dir, gguf, store) = try files()
            defer { _ = dir }
            let path = kind == "gguf" ? gguf : store
            let c = try ModelSource(path: path).configuration
            let last = ExpertKey(layer: c.layerCount - 1, expert: c.expertCount - 1)
            let cut = try range(of: last, in: path).lowerBound
            let paged = try PagedExpertStore(source: try ModelSource(path: path), capacity: 1 << 20)
            XCTAssertEqual(truncate(path, off_t(cut)), 0)
            XCTAssertThrowsError(try paged.withExpert(layer: last.layer, expert: last.expert) { _ in }) { error in
                let text = "\(error)"
                for part in [path, "expert \(last.expert) of layer \(last.layer)", "truncated while in use"] {
                    XCTAssertTrue(text.contains(part), "\(kind): \(text) lacks \(part)")
                }
            }
            XCTAssertNoThrow(try paged.withExpert(layer: 0, expert: 0) { _ in }, kind)
        }
    }

    /// Overwritten in place while a store uses it: the record's checksum catches it on the next
    /// read, naming the layer, expert and file (a GGUF has no checksums: see docs/reliability.md).
    func testStoreOverwrittenWhileInUseIsAChecksumError() throws {
        let (dir, _, store) = try files()
        defer { _ = dir }
        let paged = try PagedExpertStore(source: try ModelSource(path: store), capacity: 1 << 20)
        try paged.withExpert(layer: 1, expert: 0) { _ in }
        paged.evictAll()
        let record = try range(of: ExpertKey(layer: 1, expert: 0), in: store)
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: store))
        try handle.seek(toOffset: UInt64(record.lowerBound))
        try handle.write(contentsOf: Data(repeating: 0x5A, count: 512))
        try handle.close()
        XCTAssertThrowsError(try paged.withExpert(layer: 1, expert: 0) { _ in }) { error in
            guard case let ExpertStoreError.checksumMismatch(path, layer, expert, offset, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, store)
            XCTAssertEqual([layer, expert, offset], [1, 0, record.lowerBound])
            XCTAssertTrue("\(error)".contains("expert 0 of layer 1"), "\(error)")
        }
    }
}
