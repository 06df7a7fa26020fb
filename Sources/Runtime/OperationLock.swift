import Foundation

/// The lock that serializes the operations of one ``Model`` (``Model/withExclusiveAccess(_:)``).
/// It guards no value of its own but the use of the model's transformer and store hooks, so
/// it is a lock and not a `Mutex` around state. Recursive: an operation may call the model
/// again on the same thread (``Model/logits(tokens:)`` calls ``Model/evaluate(tokens:)``, a
/// progress callback may evaluate) without deadlocking.
final class OperationLock: Sendable {
    private let lock = NSRecursiveLock()

    func run<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
