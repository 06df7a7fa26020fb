import Foundation
import Synchronization

/// Ctrl-C (SIGINT): while generating, stops the reply; when idle, exits the process.
///
/// The handler is a plain C function installed with `sigaction`, so it can touch only what is
/// async-signal-safe: the process-wide atomics below (`Atomic` is `Sendable` and lock-free),
/// `write(2)` and `_exit(2)`. It captures nothing, and no other state is shared with it, so
/// nothing here needs an unchecked `Sendable`.
struct InterruptHandler {
    private static let generating = Atomic<Bool>(false)
    private static let interrupted = Atomic<Bool>(false)
    private static let idleExitStatus = Atomic<Int32>(130)
    private static let idleNewline = Atomic<Bool>(false)

    /// Installs the SIGINT handler synchronously (a DispatchSource arms asynchronously, so a
    /// Ctrl-C right after start-up could be lost). While generating, Ctrl-C sets a flag the
    /// generation loop polls; when idle, the process exits with `idleExitStatus`, after a
    /// newline on stdout if `newlineOnIdleExit` (so a shell prompt starts on its own line).
    init(idleExitStatus: Int32, newlineOnIdleExit: Bool = false) {
        Self.idleExitStatus.store(idleExitStatus, ordering: .relaxed)
        Self.idleNewline.store(newlineOnIdleExit, ordering: .relaxed)
        var action = sigaction()
        #if os(Linux)
        action.__sigaction_handler.sa_handler = { _ in InterruptHandler.handle() }
        #else
        action.__sigaction_u.__sa_handler = { _ in InterruptHandler.handle() }
        #endif
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
    }

    private static func handle() {
        if generating.load(ordering: .acquiring) {
            interrupted.store(true, ordering: .releasing)
        } else {
            if idleNewline.load(ordering: .relaxed) {
                var newline: UInt8 = 0x0A
                _ = write(STDOUT_FILENO, &newline, 1)
            }
            _exit(idleExitStatus.load(ordering: .relaxed))
        }
    }

    /// Runs `body` with Ctrl-C cancelling it; `isCancelled` reports whether it was pressed.
    func generating<T>(_ body: (_ isCancelled: @escaping @Sendable () -> Bool) throws -> T) rethrows -> T {
        Self.interrupted.store(false, ordering: .releasing)
        Self.generating.store(true, ordering: .releasing)
        defer { Self.generating.store(false, ordering: .releasing) }
        return try body { InterruptHandler.interrupted.load(ordering: .acquiring) }
    }
}
