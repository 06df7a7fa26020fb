import Foundation

/// Everything `moe serve` adds to a model run, with each default and limit defined once
/// (the command's flags and help read them from here). docs/serving.md says what each trades.
public struct ServerOptions: Sendable, Equatable {
    /// Loopback by default: nothing off this machine can connect unless asked for.
    public var host = "127.0.0.1"
    /// 0 picks a free port (the server prints the one it got).
    public var port = 8080
    /// Requests that may wait while one generates; the next gets 429 (or the fallback).
    public var maxQueue = 8
    /// Seconds a request may take from arrival, queue wait included; nil = no limit.
    public var requestTimeout: Double? = 300
    /// Largest request body in bytes.
    public var maxBodySize = 1 << 20
    /// Clients must send `Authorization: Bearer <apiKey>` when set.
    public var apiKey: String?
    /// Name of the model in requests and `/v1/models`; nil = the model file's name.
    public var modelName: String?
    /// Base URL of an OpenAI-compatible server that takes what this one should not.
    public var fallbackURL: String?
    /// Sent to the fallback as `Authorization: Bearer …` (the client's own key is never forwarded).
    public var fallbackAPIKey: String?
    /// Replaces `model` in forwarded bodies (the fallback's name for its model).
    public var fallbackModel: String?
    /// Requests matching any rule go to the fallback.
    public var routes: [RouteRule] = []

    public init() {}

    /// The valid values of each number.
    public enum Limits {
        public static let port = 0...65535
        public static let maxQueue = 0...100_000
        public static let requestTimeout = 0.001...86_400.0
        public static let maxBodySize = 1024...(1 << 30)
    }

    /// Checks the values (the CLI's checks and a library caller's are this one).
    public func validate() throws(ServerOptionsError) {
        guard Limits.port.contains(port) else { throw .invalid("--port must be between 0 and 65535") }
        guard Limits.maxQueue.contains(maxQueue) else { throw .invalid("--max-queue must be between 0 and \(Limits.maxQueue.upperBound)") }
        if let t = requestTimeout, !Limits.requestTimeout.contains(t) {
            throw .invalid("--request-timeout must be between \(Limits.requestTimeout.lowerBound) and \(Int(Limits.requestTimeout.upperBound)) seconds (0 = no limit)")
        }
        guard Limits.maxBodySize.contains(maxBodySize) else { throw .invalid("--max-body-size must be between 1KiB and 1GiB") }
        if let apiKey, apiKey.isEmpty { throw .invalid("--api-key must not be empty") }
        if !routes.isEmpty, fallbackURL == nil { throw .invalid("--route needs --fallback URL: routed requests go there") }
        if let fallbackURL { _ = try FallbackClient.baseURL(fallbackURL) }
    }
}

public enum ServerOptionsError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case let .invalid(message): return message
        }
    }
}

/// A `--route` rule: which requests go to the fallback even when this server could take them.
///
/// - `model=NAME` — the request's `model` is NAME (`NAME*` matches a prefix, `*` every model
///   other than this server's own).
/// - `min-prompt-tokens=N` — prompts of N tokens or more (long prompts cost the most prefill).
/// - `min-max-tokens=N` — requests that allow N or more generated tokens.
public enum RouteRule: Sendable, Equatable, CustomStringConvertible {
    case model(String)
    case minPromptTokens(Int)
    case minMaxTokens(Int)

    public init(parsing text: String) throws(ServerOptionsError) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty else { throw .invalid("--route \"\(text)\": expected KEY=VALUE (model=NAME, min-prompt-tokens=N, min-max-tokens=N)") }
        switch parts[0] {
        case "model": self = .model(parts[1])
        case "min-prompt-tokens", "min-max-tokens":
            guard let n = Int(parts[1]), n >= 1 else { throw .invalid("--route \(parts[0]) needs a whole number of at least 1, got \"\(parts[1])\"") }
            self = parts[0] == "min-prompt-tokens" ? .minPromptTokens(n) : .minMaxTokens(n)
        default:
            throw .invalid("--route \"\(text)\": unknown rule \(parts[0]) (model=NAME, min-prompt-tokens=N, min-max-tokens=N)")
        }
    }

    public var description: String {
        switch self {
        case let .model(name): return "model=\(name)"
        case let .minPromptTokens(n): return "min-prompt-tokens=\(n)"
        case let .minMaxTokens(n): return "min-max-tokens=\(n)"
        }
    }

    /// Whether a request for `model` with a prompt of `promptTokens` and `maxTokens` to generate matches.
    public func matches(model: String?, localModel: String, promptTokens: Int, maxTokens: Int) -> Bool {
        switch self {
        case let .model(pattern):
            guard let model else { return false }
            if pattern == "*" { return model != localModel }
            if pattern.hasSuffix("*") { return model.hasPrefix(pattern.dropLast()) }
            return model == pattern
        case let .minPromptTokens(n): return promptTokens >= n
        case let .minMaxTokens(n): return maxTokens >= n
        }
    }
}
