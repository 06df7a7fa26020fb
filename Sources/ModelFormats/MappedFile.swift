#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file.
///
/// Model readers map files rather than read them so that tensors can be handed out as views
/// without copying; the OS pages in only what is touched. The mapping lives as long as this
/// object, and every ``TensorView`` cut from it keeps it alive.
///
/// `@unchecked Sendable`: the only non-Sendable state is the base pointer of a read-only
/// (`PROT_READ`) mapping, set in `init` and unmapped in `deinit`; nothing writes through it,
/// so any number of threads may read the bytes at once.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?
    /// Set when this is a slice of another mapping (which it keeps alive), not a mapping itself.
    private let parent: MappedFile?
    /// This mapping's slot in ``MapGuard`` (a SIGBUS in it is a clear error, not a crash).
    private let guardSlot: Int?

    /// - Parameter randomAccess: advise random access (no read-ahead) from the first fault on;
    ///   see ``adviseRandomAccess()``.
    public init(path: String, randomAccess: Bool = false) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelFormatError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ModelFormatError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ModelFormatError.cannotOpen(path: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        parent = nil
        if size == 0 {
            base = nil
            guardSlot = nil
            return
        }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw ModelFormatError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = mapped
        guardSlot = MapGuard.register(base: mapped, size: size, path: path)
        if randomAccess { madvise(mapped, size, Int32(MADV_RANDOM)) }
    }

    /// A byte range of another mapping, seen as a file of its own (e.g. a GGUF embedded in a store).
    public init(slice range: Range<Int>, of parent: MappedFile, name: String) {
        precondition(range.lowerBound >= 0 && range.upperBound <= parent.size, "slice outside the mapping")
        self.parent = parent
        path = name
        size = range.count
        base = parent.base.map { $0 + range.lowerBound }
        guardSlot = nil
    }

    deinit {
        if let guardSlot { MapGuard.unregister(guardSlot) }
        if parent == nil, let base { munmap(base, size) }
    }

    /// Tells the kernel pages will be touched at random, which turns off read-ahead on page
    /// faults. Under a memory budget this keeps a fault on a dense tensor from pulling
    /// megabytes of neighbouring expert data into the page cache (read_ahead_kb is often 4-8 MB).
    public func adviseRandomAccess() {
        if let parent {
            parent.adviseRandomAccess()
        } else if let base {
            madvise(base, size, Int32(MADV_RANDOM))
        }
    }

    /// The whole file. Valid while `self` is alive; do not let the pointer escape the closure.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: size))
    }

    /// Base address for views that keep `self` alive (see ``TensorView``).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
