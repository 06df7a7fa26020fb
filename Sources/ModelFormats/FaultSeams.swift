import Foundation

/// Fault-injection seams by file (docs/reliability.md): tests install a replacement for a
/// system call (`pread`, `write`) for one path; code looks its path up once when it opens the
/// file and, finding none (always, outside tests), calls the system directly.
package final class FaultSeams<Seam: Sendable>: @unchecked Sendable {  // `seams` only under `lock`
    private let lock = NSLock()
    private var seams: [String: Seam] = [:]

    package init() {}

    /// Installs (nil: removes) the seam for `path`.
    package func set(_ path: String, _ seam: Seam?) {
        lock.lock()
        defer { lock.unlock() }
        seams[path] = seam
    }

    package func seam(for path: String) -> Seam? {
        lock.lock()
        defer { lock.unlock() }
        return seams.isEmpty ? nil : seams[path]
    }
}
