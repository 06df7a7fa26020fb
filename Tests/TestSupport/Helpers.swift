import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one run of the built `moe` binary did.
public struct MoeRun {
    public let status: Int32
    /// False when the process died from a signal instead of exiting.
    public let exited: Bool
    public let stdout: String
    public let stderr: String
}

extension Fixtures {
    /// Runs the built `moe` binary with `arguments` and collects its output.
    ///
    /// Spawned with `posix_spawn`, output into temporary files, not through Foundation's
    /// `Process`: on Linux its process monitor thread raced the test thread (a test that runs
    /// `moe` a dozen times crashed in Foundation, with corrupted strings, under load).
    public static func runMoe(_ arguments: [String]) throws -> MoeRun {
        let binary = try moeBinary.path
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("swiftmoe-run-\(UUID().uuidString)").path
        let outPath = base + ".out", errPath = base + ".err"
        defer { unlink(outPath); unlink(errPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, binary, &actions, nil, argv, environ)
        guard spawned == 0 else { throw SpawnFailed(path: binary, code: spawned) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SpawnFailed(path: binary, code: errno) }
        }
        let signal = status & 0x7f, exited = signal == 0
        let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
        let stderr = FileManager.default.contents(atPath: errPath) ?? Data()
        return MoeRun(status: exited ? (status >> 8) & 0xff : signal, exited: exited,
                      stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// `posix_spawn` or `waitpid` failed (errno value `code`).
    public struct SpawnFailed: Error, CustomStringConvertible {
        public let path: String
        public let code: Int32
        public var description: String { "cannot run \(path): \(String(cString: strerror(code)))" }
    }
}

/// SplitMix64: a small deterministic generator, so randomized tests reproduce.
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
