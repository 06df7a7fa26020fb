import Foundation

/// A value that is read and written only while its lock is held.
///
/// `@unchecked Sendable`: `state` is touched only inside ``withLock(_:)`` and
/// ``withLockIfAvailable(_:)``, which hold `lock` for the whole call. Callers must not let
/// class references from the state escape the closure (the types that use this box keep it
/// private and say what runs inside it). Unlike `Synchronization.Mutex`, the closure need not
/// keep the state disconnected from its arguments, so a forward pass can hand the state and a
/// caller's non-Sendable observer to the same block.
final class Locked<State>: @unchecked Sendable {
    private let lock = NSLock()
    private var state: State

    init(_ state: State) { self.state = state }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }

    /// Runs `body` if the lock is free right now; nil if another thread holds it.
    func withLockIfAvailable<R>(_ body: (inout State) throws -> R) rethrows -> R? {
        guard lock.try() else { return nil }
        defer { lock.unlock() }
        return try body(&state)
    }
}

/// Collects the first error thrown inside a parallel region.
struct FirstError: Sendable {
    private let first = Locked<(any Error)?>(nil)

    func record(_ e: any Error) {
        first.withLock { if $0 == nil { $0 = e } }
    }

    var error: (any Error)? { first.withLock { $0 } }
}
