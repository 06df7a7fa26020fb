import Foundation

/// The transformers configuration class a `config.json` is read as: its name (for messages and
/// provenance) and its `attribute_map` (alias → attribute; transformers 5.x added these, 4.57
/// had none for the supported families). Defaults stay next to each read in the family file.
public struct HFConfigClass: Sendable {
    public let name: String
    public let attributeMap: [String: String]

    public init(_ name: String, attributeMap: [String: String] = [:]) {
        self.name = name
        self.attributeMap = attributeMap
    }

    /// `key` and every name `attribute_map` joins to it, `key` first.
    func spellings(of key: String) -> [String] {
        var names = [key]
        for (alias, attribute) in attributeMap.sorted(by: { $0.key < $1.key }) {
            if attribute == key, !names.contains(alias) { names.append(alias) }
            if alias == key, !names.contains(attribute) { names.append(attribute) }
        }
        return names
    }
}

/// Typed access to a Hugging Face `config.json` as transformers reads it: every spelling of a
/// key (`attribute_map` aliases), errors that name the file and key, and a record of where each
/// defaulted value came from (``provenance``). RoPE and `layer_types` are in HFRopeReading.swift.
public struct HFConfigReader {
    public let values: [String: Any]
    public let path: String
    public let configClass: HFConfigClass
    let log = ProvenanceLog()

    public init(_ values: [String: Any], path: String, configClass: HFConfigClass) {
        self.values = values
        self.path = path
        self.configClass = configClass
    }

    /// What the family read with a default, in order: from the file or the class default.
    public var provenance: [ModelConfiguration.Provenance] { log.entries }

    /// The major version of transformers that wrote the file (`transformers_version`), if stated.
    public var transformersMajorVersion: Int? {
        (values["transformers_version"] as? String).flatMap { $0.split(separator: ".").first.flatMap { Int($0) } }
    }

    func isNull(_ key: String) -> Bool { values[key] == nil || values[key] is NSNull }

    /// The spelling of `key` the file uses (itself or an alias), nil if none has a value.
    /// Two spellings with different values are an error: which one wins differs between
    /// transformers releases.
    public func spelling(_ key: String) throws -> String? {
        let present = configClass.spellings(of: key).filter { !isNull($0) }
        guard let first = present.first else { return nil }
        for other in present.dropFirst() where "\(values[other]!)" != "\(values[first]!)" {
            throw ModelFormatError.invalidConfig(path: path, reason: "\(first) = \(values[first]!) and \(other) = \(values[other]!) disagree (both spell one setting of \(configClass.name))")
        }
        return first
    }

    /// Whether the file has `key` (or an alias) at all, even as null.
    func mentions(_ key: String) -> Bool { configClass.spellings(of: key).contains { values[$0] != nil } }

    func invalid(_ reason: String) -> ModelFormatError { .invalidConfig(path: path, reason: reason) }

    public func int(_ key: String) throws -> Int {
        guard let i = try optionalInt(key) else { throw ModelFormatError.missingConfigKey(path: path, key: key) }
        return i
    }

    public func optionalInt(_ key: String) throws -> Int? {
        guard let key = try spelling(key) else { return nil }
        guard let n = values[key] as? NSNumber, let i = Int(exactly: n.doubleValue) else {
            throw invalid("\(key) should be an integer, found \(values[key]!)")
        }
        return i
    }

    public func optionalDouble(_ key: String) throws -> Double? {
        guard let key = try spelling(key) else { return nil }
        guard let n = values[key] as? NSNumber else { throw invalid("\(key) should be a number, found \(values[key]!)") }
        return n.doubleValue
    }

    public func optionalBool(_ key: String) throws -> Bool? {
        guard let key = try spelling(key) else { return nil }
        guard let n = values[key] as? NSNumber else { throw invalid("\(key) should be true or false, found \(values[key]!)") }
        return n.boolValue
    }

    public func optionalString(_ key: String) throws -> String? {
        guard let key = try spelling(key) else { return nil }
        guard let s = values[key] as? String else { throw invalid("\(key) should be a string, found \(values[key]!)") }
        return s
    }

    public func intArray(_ key: String) throws -> [Int]? {
        guard let key = try spelling(key) else { return nil }
        guard let list = values[key] as? [Any] else { throw invalid("\(key) should be a list of integers") }
        return try list.map {
            guard let n = $0 as? NSNumber, let i = Int(exactly: n.doubleValue) else {
                throw invalid("\(key) should be a list of integers, found \(ModelFormatError.shown("\($0)"))")
            }
            return i
        }
    }

    // MARK: Values with a class default, recorded for `moe inspect`

    /// Notes that `setting` is `value`, read from `key` (nil: the class default).
    public func record(_ setting: String, _ value: String, key: String?) {
        log.entries.append(.init(setting: setting, value: value, origin: key == nil ? .default : .file, source: key ?? configClass.name))
    }

    /// `read(key)`, or `value` (the class default) when the file has no value; recorded as `setting`.
    func recorded<T>(_ key: String, _ value: T, as setting: String, show: (T) -> String, _ read: (String) throws -> T?) throws -> T {
        let found = try read(key)
        record(setting, show(found ?? value), key: found == nil ? nil : try spelling(key))
        return found ?? value
    }

    public func int(_ key: String, default value: Int, as setting: String) throws -> Int {
        try recorded(key, value, as: setting, show: { "\($0)" }) { try optionalInt($0) }
    }

    public func double(_ key: String, default value: Double, as setting: String) throws -> Double {
        try recorded(key, value, as: setting, show: Self.show) { try optionalDouble($0) }
    }

    public func bool(_ key: String, default value: Bool, as setting: String) throws -> Bool {
        try recorded(key, value, as: setting, show: { "\($0)" }) { try optionalBool($0) }
    }

    /// A value that may be absent in the model (a sliding window, `clip_qkv`): an explicit null
    /// in the file means none, a missing key means the class default `value`.
    func recordedOptional<T>(_ key: String, _ value: T?, as setting: String, show: (T) -> String, _ read: (String) throws -> T?) throws -> T? {
        let found = try read(key)
        let explicitNull = found == nil && mentions(key)
        let result = explicitNull ? nil : (found ?? value)
        record(setting, result.map(show) ?? "none", key: found != nil || explicitNull ? configClass.spellings(of: key).first { values[$0] != nil } : nil)
        return result
    }

    public func optionalInt(_ key: String, default value: Int?, as setting: String) throws -> Int? {
        try recordedOptional(key, value, as: setting, show: { "\($0)" }) { try optionalInt($0) }
    }

    public func optionalDouble(_ key: String, default value: Double?, as setting: String) throws -> Double? {
        try recordedOptional(key, value, as: setting, show: Self.show) { try optionalDouble($0) }
    }

    public func intArray(_ key: String, default value: [Int], as setting: String) throws -> [Int] {
        try recorded(key, value, as: setting, show: { "\($0)" }) { try intArray($0) }
    }

    /// `num_key_value_heads`: `value` (the class default) when missing; an explicit null means
    /// one per attention head, as MixtralConfig and OlmoeConfig say (`if num_key_value_heads is None`).
    public func kvHeads(default value: Int, heads: Int) throws -> Int {
        guard try spelling("num_key_value_heads") == nil, mentions("num_key_value_heads") else {
            return try int("num_key_value_heads", default: value, as: "kv heads")
        }
        record("kv heads", "\(heads)", key: "num_key_value_heads")
        return heads
    }

    /// Numbers as a person writes them: `1000000`, `1e-06`.
    static func show(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : Double(Float(x)) == x ? "\(Float(x))" : "\(x)"
    }

    /// The activation (`hidden_act`): the executor computes SiLU (transformers' `silu`, alias `swish`).
    public func requireSiLU() throws {
        let act = try optionalString("hidden_act")
        guard act == nil || act == "silu" || act == "swish" else {
            throw invalid("hidden_act \(ModelFormatError.shown(act!)) is not supported (only silu)")
        }
        record("activation", act ?? "silu", key: act == nil ? nil : "hidden_act")
    }
}

/// The provenance entries one reader collects (a reference, so the reader stays a value).
final class ProvenanceLog {
    var entries: [ModelConfiguration.Provenance] = []
}

/// Typed access to `ARCH.*` keys of a GGUF file's metadata.
public struct GGUFMetadataReader {
    public let file: GGUFFile
    public let architecture: String

    public init(_ file: GGUFFile, architecture: String) {
        self.file = file
        self.architecture = architecture
    }

    public func value(_ suffix: String) -> GGUFValue? { file.metadata["\(architecture).\(suffix)"] }

    public func optionalInt(_ suffix: String) throws -> Int? {
        let key = "\(architecture).\(suffix)"
        guard let v = file.metadata[key] else { return nil }
        if let i = v.int { return i }
        // Some converters write per-layer arrays (e.g. head_count_kv); accept them when uniform.
        if let list = v.array, let first = list.first?.int, list.allSatisfy({ $0.int == first }) { return first }
        throw ModelFormatError.invalidMetadata(path: file.path, key: key, reason: "expected an integer, found \(v)")
    }

    public func int(_ suffix: String) throws -> Int {
        guard let v = try optionalInt(suffix) else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).\(suffix)", reason: "required key is missing")
        }
        return v
    }

    public func double(_ suffix: String, default value: Double) throws -> Double {
        let key = "\(architecture).\(suffix)"
        guard let v = file.metadata[key] else { return value }
        guard let d = v.double else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: key, reason: "expected a number, found \(v)")
        }
        return d
    }

    /// A number llama.cpp requires (it refuses the file without it).
    public func requiredDouble(_ suffix: String) throws -> Double {
        guard value(suffix) != nil else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).\(suffix)", reason: "required key is missing")
        }
        return try double(suffix, default: 0)
    }

    public func optionalBool(_ suffix: String) throws -> Bool? {
        let key = "\(architecture).\(suffix)"
        guard let v = file.metadata[key] else { return nil }
        guard let b = v.bool else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: key, reason: "expected a bool, found \(v)")
        }
        return b
    }
}
