import Dispatch
import Foundation

/// Output files that appear whole or not at all (`moe convert`'s store and plan, `moe
/// calibrate`'s statistics): bytes go to a temporary file in the destination's directory,
/// which is synced, renamed over the destination (`rename(2)` replaces it in one step) and
/// the directory synced. A failed write (disk full, an I/O error) removes the temporary file
/// and leaves the previous output as it was; so does SIGINT or SIGTERM once
/// ``PartialFiles/removeOnInterrupt()`` is installed. See docs/reliability.md.
public enum AtomicFile {
    /// A temporary path beside `path` (same directory, so the rename never crosses file systems).
    public static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let name = ".\(url.lastPathComponent).\(getpid()).\(counter.next()).tmp"
        return url.deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Writes `data` to `path` atomically (see the type's description).
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { file in try data.withUnsafeBytes { try file.write($0) } }
    }

    /// Writes what `body` writes to `path` atomically: a file too large to hold whole in memory
    /// goes out piece by piece.
    public static func write(to path: String, _ body: (Writer) throws -> Void) throws {
        let temporary = temporaryPath(for: path)
        let file = try Writer(creating: temporary, destination: path)
        do {
            try body(file)
            try file.sync()
            try file.close()
            try commit(temporary, to: path)
        } catch {
            file.discard()
            throw error
        }
    }

    /// Renames a complete, synced `temporary` over `path` and syncs the directory, so that after
    /// a crash the directory holds either the old file or the new one.
    public static func commit(_ temporary: String, to path: String) throws {
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            PartialFiles.forget(temporary)
            throw OutputFileError.writeFailed(path: path, reason: "cannot rename \(temporary) into place: \(reason)")
        }
        PartialFiles.forget(temporary)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let fd = open(directory, O_RDONLY)
        if fd >= 0 {
            _ = fsync(fd)  // best effort: some file systems refuse fsync on directories
            close(fd)
        }
    }

    private static let counter = Counter()
    private final class Counter: @unchecked Sendable {  // `value` only under `lock`
        private let lock = NSLock()
        private var value = 0
        func next() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }

    /// A file being written: sequential writes, positioned rewrites, sync. Registered with
    /// ``PartialFiles`` from creation until ``commit(_:to:)`` or ``discard()``.
    ///
    /// Not thread-safe: one writer at a time (the store writer, a calibration save).
    public final class Writer {
        public let path: String
        /// Where the file will go (named in errors: that is the file the user asked for).
        public let destination: String
        private var fd: Int32
        private let seam: WriteSeam?
        public private(set) var position = 0

        /// Creates (truncating) `path`, to become `destination`.
        public init(creating path: String, destination: String) throws {
            self.path = path
            self.destination = destination
            seam = AtomicFile.injectedSeam(for: destination)
            fd = try PartialFiles.create(path, destination: destination)
        }

        deinit { if fd >= 0 { _ = closeDescriptor(fd) } }

        /// Appends `bytes` (sequential `write(2)`s, so the file may also be a pipe).
        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            try write(bytes, at: position, appending: true)
            position += bytes.count
        }

        /// Writes `bytes` at `offset` (the position does not move).
        public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
            try write(bytes, at: offset, appending: false)
        }

        private func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, appending: Bool) throws {
            guard let base = bytes.baseAddress else { return }
            var done = 0
            while done < bytes.count {
                let n: Int
                if let seam {
                    n = seam(fd, base + done, bytes.count - done, offset + done)
                } else if appending {
                    n = appendToDescriptor(fd, base + done, bytes.count - done)
                } else {
                    n = pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
                }
                if n <= 0 {
                    if n < 0 && errno == EINTR { continue }
                    if n == 0 { errno = EIO }
                    throw OutputFileError.writeFailed(path: destination, reason: "writing \(bytes.count - done) bytes at offset \(offset + done) of \(path): \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }

        /// Flushes the file to disk (`fsync`).
        public func sync() throws {
            guard fsync(fd) == 0 else { throw OutputFileError.writeFailed(path: destination, reason: "fsync of \(path): \(String(cString: strerror(errno)))") }
        }

        public func close() throws {
            let result = closeDescriptor(fd)
            fd = -1
            guard result == 0 else { throw OutputFileError.writeFailed(path: destination, reason: "closing \(path): \(String(cString: strerror(errno)))") }
        }

        /// Closes and deletes the file (a failed or abandoned output).
        public func discard() {
            if fd >= 0 { _ = closeDescriptor(fd) }
            fd = -1
            unlink(path)
            PartialFiles.forget(path)
        }
    }

    // MARK: - Fault injection (tests)

    /// `pwrite`'s contract: bytes written, or -1 with `errno` set.
    package typealias WriteSeam = @Sendable (_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: Int) -> Int
    private static let seams = FaultSeams<WriteSeam>()

    /// Installs (nil: removes) the write used by writers created from now on for output
    /// `destination`. Tests only: a disk that fills up or fails after some bytes.
    package static func injectFaults(destination: String, _ seam: WriteSeam?) { seams.set(destination, seam) }

    static func injectedSeam(for destination: String) -> WriteSeam? { seams.seam(for: destination) }
}

/// A failed output write; names the file the user asked for and what went wrong.
public enum OutputFileError: Error, Equatable, CustomStringConvertible {
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .writeFailed(path, reason):
            return "cannot write \(path): \(reason) (nothing was written there; a previous \(path) is unchanged)"
        }
    }
}

/// Temporary output files of this process, removed if it is interrupted (SIGINT, SIGTERM) or
/// stopped by a model file changing under it (``MappedFile``'s SIGBUS guard).
///
/// The paths live in a fixed table of C strings so that a signal handler can unlink them
/// without allocating; the table changes only under `lock`.
public enum PartialFiles {
    static let capacity = 32
    private static let lock = NSLock()
    /// `capacity` slots, nil or a `strdup`ed path; written only under `lock`.
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        p.initialize(repeating: nil, count: capacity)
        return p
    }()
    /// Only under `lock`.
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    /// Creates `path` (O_CREAT | O_TRUNC) and registers it, under the lock the interrupt handler
    /// takes, so an interrupt never leaves a file it did not know about. Returns the descriptor.
    static func create(_ path: String, destination: String) throws -> Int32 {
        lock.lock()
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let reason = fd < 0 ? String(cString: strerror(errno)) : ""
        if fd >= 0, let slot = (0..<capacity).first(where: { slots[$0] == nil }) { slots[slot] = strdup(path) }
        lock.unlock()
        guard fd >= 0 else { throw OutputFileError.writeFailed(path: destination, reason: "cannot create \(path): \(reason)") }
        return fd
    }

    static func forget(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        for i in 0..<capacity {
            if let p = slots[i], String(cString: p) == path {
                slots[i] = nil
                free(p)
            }
        }
    }

    /// The temporary files registered now (tests).
    public static var registered: Set<String> {
        lock.lock()
        defer { lock.unlock() }
        return Set((0..<capacity).compactMap { slots[$0].map { String(cString: $0) } })
    }

    /// Unlinks every registered file. Async-signal-safe (no locks, no allocation): for the
    /// SIGBUS guard, which exits right after.
    static func unlinkAllInSignalHandler() {
        for i in 0..<capacity {
            if let p = slots[i] { unlink(p) }
        }
    }

    /// On SIGINT or SIGTERM: delete every registered temporary file, then die of the signal as
    /// the default action would. Idempotent. For commands that write outputs (convert,
    /// calibrate); not for `moe serve`, which handles these signals itself.
    public static func removeOnInterrupt() {
        lock.lock()
        defer { lock.unlock() }
        guard sources.isEmpty else { return }
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                // Keep the lock: nothing may create a file between these unlinks and the exit.
                lock.lock()
                unlinkAllInSignalHandler()
                signal(signalNumber, SIG_DFL)
                // To the process, not this thread (dispatch's threads block signals).
                kill(getpid(), signalNumber)
                sleep(1)
                _exit(128 + signalNumber)
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// `close(2)` (inside ``AtomicFile/Writer`` the name means its own method).
private func closeDescriptor(_ fd: Int32) -> Int32 { close(fd) }

/// `write(2)` (inside ``AtomicFile/Writer`` the name means its own method).
private func appendToDescriptor(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
