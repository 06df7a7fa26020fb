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
    public var readDepth: Int?
    public var threads: Int?
    public var kernels: KernelPath?
    public var kvCache: KVCache.ElementType?
    public var context: Int?
    public var calibration: String?
    public var onMiss: MissPolicy?
    public var promptChunk: Int?
    public var readAhead: Int?
    /// Free text (what wrote the file and why); ignored when reading.
    public var note: String?

    public static let formatName = "swiftmoe-run-config"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, version, memory, threads, kernels, prefetch, context, calibration, note
        case expertCache = "expert_cache", cachePolicy = "cache_policy", prefetchDepth = "prefetch_depth", prefetchWidth = "prefetch_width"
        case loaderThreads = "loader_threads", kvCache = "kv_cache", readDepth = "read_depth", onMiss = "on_miss", promptChunk = "prompt_chunk", readAhead = "read_ahead"
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
        do { try config.validate() } catch { throw bad(error.description) }
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
        if let readDepth { a += ["--read-depth", "\(readDepth)"] }
        if let threads { a += ["--threads", "\(threads)"] }
        if let kernels { a += ["--kernels", kernels.rawValue] }
        if let kvCache { a += ["--kv-cache", kvCache.rawValue] }
        if let context { a += ["--context", "\(context)"] }
        if let calibration { a += ["--calibration", calibration] }
        if let onMiss { a += ["--on-miss", onMiss.rawValue] }
        if let promptChunk { a += ["--prompt-chunk", "\(promptChunk)"] }
        if let readAhead { a += ["--read-ahead", "\(readAhead)"] }
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

// MARK: - Each option's valid values and default, defined once

extension RunConfiguration {
    /// The options a run configuration sets, by their file key; each is also the flag
    /// `--key-with-dashes` of every command that runs a model.
    public enum Option: String, CaseIterable, Sendable {
        case memory, expertCache = "expert_cache", cachePolicy = "cache_policy", prefetch, prefetchDepth = "prefetch_depth"
        case prefetchWidth = "prefetch_width", loaderThreads = "loader_threads", threads, kernels, kvCache = "kv_cache"
        case context, calibration, readDepth = "read_depth", onMiss = "on_miss", promptChunk = "prompt_chunk", readAhead = "read_ahead"

        /// The command-line flag: `--expert-cache` for `expert_cache`.
        public var flag: String { "--" + rawValue.replacingOccurrences(of: "_", with: "-") }

        /// The valid values of a numeric option, nil for the others.
        public var limit: Limit? {
            switch self {
            case .threads: return Limit(1, 1024)
            case .prefetchDepth: return Limit(1, 64)
            case .prefetchWidth, .context: return Limit(1)
            case .promptChunk: return Limit(1, 1 << 16)
            case .readAhead: return Limit(0, 16)
            case .loaderThreads: return Limit(1, 16)
            case .readDepth: return Limit(1, 64)
            default: return nil
            }
        }
    }

    /// The valid values of a numeric option: at least `minimum`, at most `maximum` if there is one.
    public struct Limit: Sendable, Equatable {
        public let minimum: Int
        public let maximum: Int?
        public init(_ minimum: Int, _ maximum: Int? = nil) { (self.minimum, self.maximum) = (minimum, maximum) }
        public func contains(_ value: Int) -> Bool { value >= minimum && maximum.map { value <= $0 } != false }
        /// "must be between 1 and 64", "must be at least 1".
        public var requirement: String { maximum.map { "must be between \(minimum) and \($0)" } ?? "must be at least \(minimum)" }
    }

    /// An option set to a value it cannot take. `description` names the file key
    /// (`threads must be …`), `flagDescription` the flag (`--threads must be …`).
    public struct InvalidOption: Error, Equatable, CustomStringConvertible {
        public let option: Option
        public let reason: String
        public var description: String { "\(option.rawValue) \(reason)" }
        public var flagDescription: String { "\(option.flag) \(reason)" }
    }

    /// Checks every option that is set; flags and `--config` files go through this same check.
    public func validate() throws(InvalidOption) {
        if let m = memory, memoryBytes.map({ $0 > 0 }) != true { throw InvalidOption(option: .memory, reason: "\"\(m)\" is not a size like 2GB") }
        if let e = expertCache, expertCacheSize == nil { throw InvalidOption(option: .expertCache, reason: "\"\(e)\" is not a size, a percentage or min") }
        let numbers: [(Option, Int?)] = [(.threads, threads), (.prefetchDepth, prefetchDepth), (.prefetchWidth, prefetchWidth),
                                         (.loaderThreads, loaderThreads), (.context, context), (.readDepth, readDepth), (.promptChunk, promptChunk), (.readAhead, readAhead)]
        for case let (option, value?) in numbers {
            if let limit = option.limit, !limit.contains(value) { throw InvalidOption(option: option, reason: limit.requirement) }
        }
    }

    /// This configuration with the options it leaves unset taken from `base` (command-line
    /// flags over a `--config` file).
    public func filling(from base: RunConfiguration) -> RunConfiguration {
        var c = self
        func fill<T>(_ key: WritableKeyPath<RunConfiguration, T?>) { c[keyPath: key] = c[keyPath: key] ?? base[keyPath: key] }
        fill(\.memory); fill(\.expertCache); fill(\.cachePolicy); fill(\.prefetch); fill(\.prefetchDepth); fill(\.prefetchWidth)
        fill(\.loaderThreads); fill(\.threads); fill(\.kernels); fill(\.kvCache); fill(\.context); fill(\.calibration)
        fill(\.readDepth)
        fill(\.onMiss); fill(\.promptChunk); fill(\.readAhead)
        return c
    }

    /// The executor options: the values set here, `ExecutorOptions`' defaults for the rest.
    public var executorOptions: ExecutorOptions {
        let defaults = ExecutorOptions()
        return ExecutorOptions(threads: threads ?? defaults.threads, kernels: kernels ?? defaults.kernels, kvCacheType: kvCache ?? defaults.kvCacheType,
                               readAhead: readAhead ?? defaults.readAhead)
    }

    /// The memory options: the values set here, `Model.MemoryOptions`' defaults for the rest.
    public var memoryOptions: Model.MemoryOptions {
        var m = Model.MemoryOptions(budget: memoryBytes, maxContext: context, prefetchWidth: prefetchWidth, calibration: calibration,
                                    expertCache: expertCacheSize)
        if let cachePolicy { m.cachePolicy = cachePolicy }
        if let prefetch { m.prefetch = prefetch }
        if let prefetchDepth { m.prefetchDepth = prefetchDepth }
        if let loaderThreads { m.loaderThreads = loaderThreads }
        if let readDepth { m.readDepth = readDepth }
        if let onMiss { m.onMiss = onMiss }
        if let promptChunk { m.promptChunk = promptChunk }
        return m
    }
}

extension Model.MemoryOptions {
    /// Without `maxContext`, a run plans for the model's context but at most this many positions.
    public static let defaultContextCap = 4096

    /// The KV cache positions a run of a model with `configuration` plans for: `maxContext`
    /// when given, else the model's context up to ``defaultContextCap``; never more than the model's.
    public func context(for configuration: ModelConfiguration) -> Int {
        max(1, min(maxContext ?? min(configuration.contextLength, Self.defaultContextCap), configuration.contextLength))
    }
}

/// Defaults of `moe calibrate` and of `moe convert`'s use of a calibration (docs/quality.md).
public enum CalibrationDefaults {
    /// How `moe calibrate` obtains per-expert sensitivities.
    public enum SensitivityMethod: String, CaseIterable, Sendable {
        /// From the routing pass's activation statistics: no further model run, cost
        /// independent of the expert count (one quantization of each expert per type).
        case proxy
        /// Rerun the calibration windows with each expert lowered alone to each type: the KL
        /// divergence itself, but experts × types reruns (small models only).
        case measured
    }

    public static let sensitivity = SensitivityMethod.proxy
    /// Candidate types of the sensitivity pass.
    public static let types = "q2_K,q3_K,q4_K,q5_K,q6_K,q8_0"
    /// Windows of `--ctx-size` tokens a measured sensitivity reruns (and `--max-ppl-increase` checks).
    public static let sensitivityWindows = 8
    /// Seconds between saves of a calibration in progress (the routing pass's file can be large).
    public static let activationSaveInterval = 30.0
}
