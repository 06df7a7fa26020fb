import Conversion
import ExpertStore
import Foundation
import ModelFormats
import TestSupport
import XCTest

/// Disk full and write errors while `moe convert` writes a store or a calibration/plan file is
/// saved (docs/reliability.md): a clear error naming the output, no temporary file left, the
/// previous output byte for byte as it was. Faults come through ``AtomicFile``'s write seam.
final class AtomicOutputTests: XCTestCase {
    /// Everything in `dir` but `keep`.
    func leftovers(_ dir: TemporaryDirectory, keep: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.url.path).filter { !keep.contains($0) }.sorted()
    }

    /// A disk that fills up after `limit` bytes of this output (ENOSPC from then on).
    func diskFull(after limit: Int) -> AtomicFile.WriteSeam {
        let written = LockedCounter()
        return { fd, buffer, count, offset in
            let allowed = written.take(count, limit: limit)
            guard allowed > 0 else {
                errno = ENOSPC
                return -1
            }
            return pwrite(fd, buffer, allowed, off_t(offset))
        }
    }

    func testDiskFullDuringConvertKeepsThePreviousStore() throws {
        let dir = TemporaryDirectory()
        let input = Fixtures.path("qwen2moe/model-q8_0.gguf")
        let out = dir.path("model.moe")
        _ = try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: "keep"), compression: .none))
        let previous = try Data(contentsOf: URL(fileURLWithPath: out))
        let other = TemporaryDirectory()
        let newSize = try Converter.convert(input: input, output: other.path("q4.moe"), options: .init(plan: BitPlan(default: "q4_0"), compression: .none)).fileSize
        // Full halfway through the store, at its last bytes, and while the header (written last, at 0) goes in.
        for limit in [newSize / 2, newSize - 10, newSize + 10] {
            AtomicFile.injectFaults(destination: out, diskFull(after: limit))
            defer { AtomicFile.injectFaults(destination: out, nil) }
            XCTAssertThrowsError(try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: "q4_0"), compression: .none))) { error in
                let text = "\(error)"
                for part in ["cannot write \(out)", "No space left on device", "unchanged"] { XCTAssertTrue(text.contains(part), "\(text) lacks \(part)") }
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), previous, "limit \(limit): the previous store changed")
            XCTAssertEqual(try leftovers(dir, keep: ["model.moe"]), [], "limit \(limit)")
            XCTAssertTrue(PartialFiles.registered.isEmpty)
        }
        // Without the fault the same conversion replaces it.
        _ = try Converter.convert(input: input, output: out, options: .init(plan: BitPlan(default: "q4_0"), compression: .none))
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out)), previous)
        XCTAssertNoThrow(try ModelSource(path: out))
        XCTAssertEqual(try leftovers(dir, keep: ["model.moe"]), [])
    }

    func testFailedSaveKeepsThePreviousFile() throws {
        let dir = TemporaryDirectory()
        let out = dir.path("plan.json")
        let old = BitPlan(default: "q8_0")
        try old.write(to: out)
        let previous = try Data(contentsOf: URL(fileURLWithPath: out))
        for (label, seam) in [("EIO", { (_: Int32, _: UnsafeRawPointer, _: Int, _: Int) -> Int in
            errno = EIO
            return -1
        } as AtomicFile.WriteSeam), ("disk full", diskFull(after: 7))] {
            AtomicFile.injectFaults(destination: out, seam)
            defer { AtomicFile.injectFaults(destination: out, nil) }
            XCTAssertThrowsError(try BitPlan(default: "q4_0").write(to: out), label) { error in
                XCTAssertTrue("\(error)".contains("cannot write \(out)"), "\(error)")
                XCTAssertTrue("\(error)".contains(label == "EIO" ? "Input/output error" : "No space left on device"), "\(error)")
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), previous, label)
            XCTAssertEqual(try leftovers(dir, keep: ["plan.json"]), [], label)
        }
        try BitPlan(default: "q4_0").write(to: out)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out)), previous)
        XCTAssertEqual(try leftovers(dir, keep: ["plan.json"]), [])
    }

    func testUnwritableDirectoryIsAClearError() throws {
        let dir = TemporaryDirectory()
        let out = dir.path("missing/model.moe")
        XCTAssertThrowsError(try Converter.convert(input: Fixtures.path("qwen2moe/model-q8_0.gguf"), output: out,
                                                   options: .init(plan: BitPlan(default: "keep"), compression: .none))) { error in
            XCTAssertTrue("\(error)".contains("cannot write \(out)") && "\(error)".contains("No such file or directory"), "\(error)")
        }
    }
}

/// Bytes a fake disk still accepts (shared by a seam's calls).
final class LockedCounter: @unchecked Sendable {  // `used` only under `lock`
    private let lock = NSLock()
    private var used = 0
    /// How many of `count` bytes still fit under `limit` (and counts them).
    func take(_ count: Int, limit: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let n = max(0, min(count, limit - used))
        used += n
        return n
    }
}
