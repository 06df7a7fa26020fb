#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What happens when a mapped model file is truncated (or replaced in place by a shorter file)
/// while a run uses it: the next touch of a page past the new end raises SIGBUS, which by
/// default kills the process with no word about why. ``MappedFile`` registers each mapping
/// here; a SIGBUS inside one is answered with a one-line message naming the file and the byte,
/// the process's temporary output files are deleted (``PartialFiles``) and it exits with status
/// 74 (EX_IOERR). A SIGBUS anywhere else keeps its default action. See docs/reliability.md.
///
/// The table is fixed-size C memory so the handler neither allocates nor locks: entries are
/// written under `lock` before the mapping is used and cleared before it is unmapped.
enum MapGuard {
    struct Entry {
        var start: UInt
        var end: UInt
        /// The `strdup`ed message ("moe: PATH changed while in use: ...\n").
        var message: UnsafeMutablePointer<CChar>?
    }

    static let capacity = 256
    private static let lock = NSLock()
    /// `capacity` entries; written only under `lock`, read by the handler.
    nonisolated(unsafe) private static let table: UnsafeMutablePointer<Entry> = {
        let p = UnsafeMutablePointer<Entry>.allocate(capacity: capacity)
        p.initialize(repeating: Entry(start: 0, end: 0, message: nil), count: capacity)
        return p
    }()
    /// Only under `lock`.
    nonisolated(unsafe) private static var installed = false

    /// Registers `[base, base + size)` as a mapping of `path`. Returns the slot (nil: table full,
    /// the mapping is unguarded and a SIGBUS there keeps its default action).
    static func register(base: UnsafeRawPointer, size: Int, path: String) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        if !installed {
            install()
            installed = true
        }
        guard let slot = (0..<capacity).first(where: { table[$0].message == nil }) else { return nil }
        let text = "moe: \(ModelFormatError.shown(path)) changed while in use: it was truncated or rewritten in place while mapped"
            + " (SIGBUS reading it); stop runs before replacing a model file, or write the new file elsewhere and rename it into place\n"
        table[slot] = Entry(start: UInt(bitPattern: base), end: UInt(bitPattern: base) + UInt(size), message: strdup(text))
        return slot
    }

    static func unregister(_ slot: Int) {
        lock.lock()
        defer { lock.unlock() }
        let message = table[slot].message
        table[slot] = Entry(start: 0, end: 0, message: nil)
        free(message)
    }

    private static func install() {
        var action = sigaction()
        #if os(Linux)
        action.__sigaction_handler.sa_sigaction = { _, info, _ in MapGuard.handle(info) }
        #else
        action.__sigaction_u.__sa_sigaction = { _, info, _ in MapGuard.handle(info) }
        #endif
        action.sa_flags = SA_SIGINFO
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, nil)
    }

    /// The handler: async-signal-safe calls only (`write`, `unlink`, `_exit`, `signal`).
    private static func handle(_ info: UnsafeMutablePointer<siginfo_t>?) {
        #if os(Linux)
        let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
        #else
        let address = UInt(bitPattern: info?.pointee.si_addr)
        #endif
        for i in 0..<capacity {
            let e = table[i]
            guard let message = e.message, address >= e.start, address < e.end else { continue }
            PartialFiles.unlinkAllInSignalHandler()
            _ = write(STDERR_FILENO, message, strlen(message))
            _exit(74)
        }
        // Not a model mapping: the default action (the fault repeats when the handler returns).
        signal(SIGBUS, SIG_DFL)
    }
}
