import Synchronization

/// One model, many clients: requests take the model one at a time, in the order they were
/// admitted (FIFO, so no client can overtake another), and at most `maxWaiting` wait while
/// one runs — the next one is refused (429, or the fallback) instead of waiting unboundedly.
///
/// A ``Ticket`` is a request's place: admitted → (waiting) → holding the turn → finished.
/// Cancelling the task that waits (client gone, timeout) gives its place up; finishing a
/// ticket hands the turn to the next. All state sits behind one `Mutex`; `onChange` (the
/// metrics' gauges, lock-free) is called under it, so the gauges never show an older state.
final class RequestQueue: Sendable {
    let maxWaiting: Int
    private let onChange: @Sendable (_ waiting: Int, _ running: Int) -> Void

    private struct Waiter {
        let id: UInt64
        /// Set once the ticket's task waits for its turn.
        var continuation: CheckedContinuation<Void, any Error>?
    }
    private struct State {
        var nextID: UInt64 = 0
        var running: UInt64?
        var waiting: [Waiter] = []
    }
    private let state = Mutex(State())

    init(maxWaiting: Int, onChange: @escaping @Sendable (_ waiting: Int, _ running: Int) -> Void = { _, _ in }) {
        self.maxWaiting = maxWaiting
        self.onChange = onChange
    }

    /// Requests waiting for the model (not counting the one running).
    var waiting: Int { state.withLock { $0.waiting.count } }

    /// A place in the queue, or nil when `maxWaiting` requests already wait for a running one.
    func admit() -> Ticket? {
        let admitted: UInt64? = state.withLock { s in
            guard s.running == nil || s.waiting.count < maxWaiting else { return nil }
            let id = s.nextID
            s.nextID += 1
            s.waiting.append(Waiter(id: id))
            Self.promote(&s)
            report(s)
            return id
        }
        return admitted.map { Ticket(id: $0, queue: self) }
    }

    private func report(_ s: borrowing State) { onChange(s.waiting.count, s.running == nil ? 0 : 1) }

    /// Gives the turn to the first waiter when nobody holds it.
    private static func promote(_ s: inout State) {
        guard s.running == nil, !s.waiting.isEmpty else { return }
        let next = s.waiting.removeFirst()
        s.running = next.id
        next.continuation?.resume()
    }

    fileprivate func wait(_ id: UInt64) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: Result<Bool, CancellationError> = state.withLock { s in
                    if s.running == id { return .success(true) }
                    guard let index = s.waiting.firstIndex(where: { $0.id == id }), !Task.isCancelled else { return .failure(CancellationError()) }
                    s.waiting[index].continuation = continuation
                    return .success(false)
                }
                switch outcome {
                case .success(true): continuation.resume()
                case .success(false): break
                case let .failure(error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            leaveWaiting(id)
        }
    }

    /// Removes a waiting ticket (its waiter, if any, gets `CancellationError`); a ticket
    /// holding the turn keeps it until ``finish(_:)``.
    private func leaveWaiting(_ id: UInt64) {
        state.withLock { s in
            guard let index = s.waiting.firstIndex(where: { $0.id == id }) else { return }
            s.waiting.remove(at: index).continuation?.resume(throwing: CancellationError())
            report(s)
        }
    }

    /// Ends a ticket wherever it is: leaves the queue, or hands the turn on. Idempotent.
    fileprivate func finish(_ id: UInt64) {
        state.withLock { s in
            if s.running == id {
                s.running = nil
                Self.promote(&s)
            } else if let index = s.waiting.firstIndex(where: { $0.id == id }) {
                s.waiting.remove(at: index).continuation?.resume(throwing: CancellationError())
            }
            report(s)
        }
    }
}

/// A request's place in a ``RequestQueue``. `finish()` must be called when the request is
/// done with the model (or gives up); the engine does it on every path.
final class Ticket: Sendable {
    let id: UInt64
    private let queue: RequestQueue

    fileprivate init(id: UInt64, queue: RequestQueue) {
        self.id = id
        self.queue = queue
    }

    /// Returns when this request holds the model; throws `CancellationError` (and leaves the
    /// queue) when the waiting task is cancelled.
    func waitForTurn() async throws { try await queue.wait(id) }

    func finish() { queue.finish(id) }
}
