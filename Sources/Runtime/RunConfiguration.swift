import Executor
import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router

extension KernelPath: Codable {}
extension KVCache.ElementType: Codable {}

/// Runtime options kept in a JSON file: `moe tune` writes one, and every command that runs a
/// model reads one with `--config FILE` (flags on the command line override it). Absent keys
/// keep their defaults. Sizes are strings as on the command line (`2GB`, `25%`, `min`) or byte
/// counts.
///
/// ```json
/// {"format": "swiftmoe-run-config", "version": 1, "memory": "200MB", "expert_cache": "3342336",
///  "cache_policy": "lfu", "prefetch": "none"}
/// ```
public struct RunConfiguration: Codable, Sendable, Equatable {
    public var format = RunConfiguration.formatName
    public var version = 1
    public var memory: String?
    public var expertCache: String?
    public var cachePolicy: CachePolicyKind?
    public var prefetch: PredictorKind?
    public var prefetchDepth: Int?
    public var prefetchWidth: Int?
    public var loaderThreads: Int?
    public var threads: Int?
    public var kernels: KernelPath?
    public var kvCache: KVCache.ElementType?
    public var context: Int?
    public var calibration: String?
    /// Free text (what wrote the file and why); ignored when reading.
    public var note: String?

    public static let formatName = "swiftmoe-run-config"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, version, memory, threads, kernels, prefetch, context, calibration, note
        case expertCache = "expert_cache", cachePolicy = "cache_policy", prefetchDepth = "prefetch_depth", prefetchWidth = "prefetch_width"
        case loaderThreads = "loader_threads", kvCache = "kv_cache"
    }

    public init() {}

    /// The budget in bytes, if set.
    public var memoryBytes: Int? { memory.flatMap(Units.parseBytes) }
    public var expertCacheSize: Model.ExpertCacheSize? { expertCache.flatMap { Model.ExpertCacheSize($0) } }

    /// Reads and checks a configuration file; unknown keys and bad values are errors (a typo
    /// must not silently fall back to a default).
    public static func load(path: String) throws -> RunConfiguration {
        func bad(_ reason: String) -> RunConfigurationError { .invalid(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else { throw RunConfigurationError.cannotRead(path: path) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw bad("not a JSON object") }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = object.keys.filter({ !known.contains($0) }).sorted().first {
            throw bad("unknown key \"\(unknown)\" (known: \(known.sorted().joined(separator: ", ")))")
        }
        let config: RunConfiguration
        do { config = try JSONDecoder().decode(RunConfiguration.self, from: data) } catch let DecodingError.dataCorrupted(context) {
            throw bad("\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw bad("\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch {
            throw bad("\(error)")
        }
        guard config.format == formatName else { throw bad("format is \"\(config.format)\", expected \"\(formatName)\"") }
        guard config.version == 1 else { throw bad("version \(config.version) is not supported (1 is)") }
        if let m = config.memory, config.memoryBytes.map({ $0 > 0 }) != true { throw bad("memory \"\(m)\" is not a size like 2GB") }
        if let e = config.expertCache, config.expertCacheSize == nil { throw bad("expert_cache \"\(e)\" is not a size, a percentage or min") }
        if let t = config.threads, !(1...1024).contains(t) { throw bad("threads must be between 1 and 1024") }
        if let d = config.prefetchDepth, !(1...64).contains(d) { throw bad("prefetch_depth must be between 1 and 64") }
        if let w = config.prefetchWidth, w < 1 { throw bad("prefetch_width must be at least 1") }
        if let l = config.loaderThreads, !(1...16).contains(l) { throw bad("loader_threads must be between 1 and 16") }
        if let c = config.context, c < 1 { throw bad("context must be at least 1") }
        return config
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { try (encoder.encode(self) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw RunConfigurationError.cannotWrite(path: path, reason: error.localizedDescription)
        }
    }

    /// The same options as command-line flags.
    public var arguments: [String] {
        var a: [String] = []
        if let memory { a += ["--memory", memory] }
        if let expertCache { a += ["--expert-cache", expertCache] }
        if let cachePolicy { a += ["--cache-policy", cachePolicy.rawValue] }
        if let prefetch { a += ["--prefetch", prefetch.rawValue] }
        if let prefetchDepth { a += ["--prefetch-depth", "\(prefetchDepth)"] }
        if let prefetchWidth { a += ["--prefetch-width", "\(prefetchWidth)"] }
        if let loaderThreads { a += ["--loader-threads", "\(loaderThreads)"] }
        if let threads { a += ["--threads", "\(threads)"] }
        if let kernels { a += ["--kernels", kernels.rawValue] }
        if let kvCache { a += ["--kv-cache", kvCache.rawValue] }
        if let context { a += ["--context", "\(context)"] }
        if let calibration { a += ["--calibration", calibration] }
        return a
    }
}

public enum RunConfigurationError: Error, Equatable, CustomStringConvertible {
    case cannotRead(path: String)
    case cannotWrite(path: String, reason: String)
    case invalid(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(path): return "cannot read the configuration file \(path)"
        case let .cannotWrite(path, reason): return "cannot write \(path): \(reason)"
        case let .invalid(path, reason): return "\(path): invalid run configuration: \(reason)"
        }
    }
}
