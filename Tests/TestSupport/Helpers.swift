import Foundation

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
    public static func runMoe(_ arguments: [String]) throws -> MoeRun {
        let process = Process()
        process.executableURL = try moeBinary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return MoeRun(status: process.terminationStatus, exited: process.terminationReason == .exit,
                      stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
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
