import ModelFormats

/// The three weight matrices of one routed expert (ggml order):
/// gate and up are `[hidden, ffn]` (ffn rows of hidden), down is `[ffn, hidden]`.
public struct ExpertWeights: Sendable {
    public let gate: TensorView
    public let up: TensorView
    public let down: TensorView

    public init(gate: TensorView, up: TensorView, down: TensorView) {
        self.gate = gate
        self.up = up
        self.down = down
    }

    public var byteCount: Int { gate.data.count + up.data.count + down.data.count }
}

/// Where the executor gets expert weights from. The weights are valid only inside `body`:
/// a paging store pins the expert for the call and may evict it afterwards, so do not let
/// them escape.
public protocol ExpertProvider: AnyObject, Sendable {
    func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R
    /// Starts loading `keys` in the background; returns the keys actually queued. Providers
    /// that keep every expert resident do nothing.
    @discardableResult
    func prefetch(_ keys: [ExpertKey], currentLayer: Int) -> [ExpertKey]
    /// Which of `keys` are neither resident nor loading now (a request would read them), in the
    /// order given. Providers that keep every expert resident return none.
    func notResident(_ keys: [ExpertKey]) -> [ExpertKey]
    /// One decode token's experts of a layer, pinned together for `body`, in the order given. A
    /// provider may serve a missing one from a substitute (``LowBitOnMiss``: its low-bit copy);
    /// the others serve ``withExperts(layer:experts:_:)``.
    func withTokenExperts<R>(layer: Int, experts: [Int], _ body: ([ExpertWeights]) throws -> R) throws -> R
}

extension ExpertProvider {
    @discardableResult
    public func prefetch(_ keys: [ExpertKey], currentLayer: Int) -> [ExpertKey] { [] }

    public func notResident(_ keys: [ExpertKey]) -> [ExpertKey] { [] }

    public func withTokenExperts<R>(layer: Int, experts: [Int], _ body: ([ExpertWeights]) throws -> R) throws -> R {
        try withExperts(layer: layer, experts: experts, body)
    }

    /// Several experts of one layer at once (all pinned for the call), in the order given.
    public func withExperts<R>(layer: Int, experts: [Int], _ body: ([ExpertWeights]) throws -> R) throws -> R {
        func acquire(_ i: Int, _ held: [ExpertWeights]) throws -> R {
            if i == experts.count { return try body(held) }
            return try withExpert(layer: layer, expert: experts[i]) { try acquire(i + 1, held + [$0]) }
        }
        return try acquire(0, [])
    }
}

public enum ExpertStoreError: Error, Equatable, CustomStringConvertible {
    case noSuchExpert(layer: Int, expert: Int)
    case poolTooSmall(needed: Int, capacity: Int)
    case cannotReserve(bytes: Int)
    case checksumMismatch(path: String, layer: Int, expert: Int, offset: Int, expected: UInt64, found: UInt64)
    case corruptRecord(path: String, layer: Int, expert: Int, offset: Int, reason: String)
    case readFailed(path: String, offset: Int, length: Int, reason: String)
    case budgetTooSmall(budget: Int, minimum: Int, detail: String)

    public var description: String {
        switch self {
        case let .noSuchExpert(layer, expert):
            return "layer \(layer) has no expert \(expert)"
        case let .poolTooSmall(needed, capacity):
            return "the expert pool (\(capacity) bytes) cannot hold the \(needed) bytes one layer's active experts need at once; raise --memory or --expert-cache"
        case let .cannotReserve(bytes):
            return "cannot reserve \(bytes) bytes for the expert pool"
        case let .checksumMismatch(path, layer, expert, offset, expected, found):
            return "\(path): expert \(expert) of layer \(layer): checksum mismatch at offset \(offset) (expected \(String(expected, radix: 16)), found \(String(found, radix: 16))); the file is damaged, re-run moe convert"
        case let .corruptRecord(path, layer, expert, offset, reason):
            return "\(path): expert \(expert) of layer \(layer) at offset \(offset): \(reason); the file is damaged, re-run moe convert"
        case let .readFailed(path, offset, length, reason):
            return "\(path): reading \(length) bytes at offset \(offset) failed: \(reason)"
        case let .budgetTooSmall(budget, minimum, detail):
            return "--memory \(budget) bytes cannot run this model: it needs at least \(minimum) bytes (\(detail))"
        }
    }
}

/// Every expert resident: views straight into the model file's mapping.
/// Shapes and types of every expert are checked when the store is built.
public final class ResidentExpertStore: ExpertProvider {
    private let experts: [[ExpertWeights]]

    public init(source: ModelSource) throws {
        let c = source.configuration
        experts = try (0..<c.layerCount).map { l in
            guard c.layerKinds[l] == .moe else { return [] }
            return try (0..<c.expertCount).map { e in
                let t = try source.expertTensors(layer: l, expert: e)
                return ExpertWeights(gate: t[0], up: t[1], down: t[2])
            }
        }
    }

    public func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R {
        guard layer >= 0, layer < experts.count, expert >= 0, expert < experts[layer].count else {
            throw ExpertStoreError.noSuchExpert(layer: layer, expert: expert)
        }
        return try body(experts[layer][expert])
    }

    /// Total bytes of all experts.
    public var byteCount: Int { experts.joined().reduce(0) { $0 + $1.byteCount } }
}
