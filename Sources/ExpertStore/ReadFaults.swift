import Foundation
import ModelFormats

/// Fault injection for the expert store's reads (docs/reliability.md): tests replace `pread`
/// for one file with a function that fails (EIO), comes back short, or sleeps. The seam is
/// looked up once when a ``DirectReader`` opens the file; a reader opened with none installed
/// (every reader outside tests) calls `pread` directly, so normal runs pay nothing per read.
extension DirectReader {
    /// `pread`'s contract: bytes read, 0 at the end of the file, or -1 with `errno` set.
    package typealias ReadSeam = @Sendable (_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int) -> Int

    private static let seams = FaultSeams<ReadSeam>()

    /// Installs (nil: removes) the read used by readers opened from now on for `path` (exactly
    /// as the catalog names the file). Tests only; readers already open keep what they had.
    package static func injectFaults(path: String, _ seam: ReadSeam?) { seams.set(path, seam) }

    static func injectedSeam(for path: String) -> ReadSeam? { seams.seam(for: path) }
}

extension ExpertStoreError {
    /// A failed read of one expert, its message naming the layer and the expert as well as
    /// the file, offset and cause (``PagedExpertStore`` loads go through this).
    static func naming(layer: Int, expert: Int, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let ExpertStoreError.readFailed(path, offset, length, reason) {
            throw ExpertStoreError.readFailed(path: path, offset: offset, length: length, reason: "expert \(expert) of layer \(layer): \(reason)")
        }
    }
}
