import Foundation

/// Typed access to a Hugging Face `config.json`, with errors that name the file and key.
public struct HFConfigReader {
    public let values: [String: Any]
    public let path: String

    public init(_ values: [String: Any], path: String) {
        self.values = values
        self.path = path
    }

    private func isNull(_ key: String) -> Bool { values[key] == nil || values[key] is NSNull }

    public func int(_ key: String) throws -> Int {
        guard !isNull(key) else { throw ModelFormatError.missingConfigKey(path: path, key: key) }
        return try optionalInt(key)!
    }

    public func optionalInt(_ key: String) throws -> Int? {
        guard !isNull(key) else { return nil }
        guard let n = values[key] as? NSNumber, let i = Int(exactly: n.doubleValue) else {
            throw ModelFormatError.invalidConfig(path: path, reason: "\(key) should be an integer, found \(values[key]!)")
        }
        return i
    }

    public func int(_ key: String, default value: Int) throws -> Int { try optionalInt(key) ?? value }

    public func optionalDouble(_ key: String) throws -> Double? {
        guard !isNull(key) else { return nil }
        guard let n = values[key] as? NSNumber else {
            throw ModelFormatError.invalidConfig(path: path, reason: "\(key) should be a number, found \(values[key]!)")
        }
        return n.doubleValue
    }

    public func double(_ key: String, default value: Double) throws -> Double { try optionalDouble(key) ?? value }

    public func bool(_ key: String, default value: Bool) throws -> Bool {
        guard !isNull(key) else { return value }
        guard let n = values[key] as? NSNumber else {
            throw ModelFormatError.invalidConfig(path: path, reason: "\(key) should be true or false, found \(values[key]!)")
        }
        return n.boolValue
    }

    public func intArray(_ key: String) throws -> [Int] {
        guard !isNull(key) else { return [] }
        guard let list = values[key] as? [Any] else {
            throw ModelFormatError.invalidConfig(path: path, reason: "\(key) should be a list of integers")
        }
        return try list.map {
            guard let n = $0 as? NSNumber, let i = Int(exactly: n.doubleValue) else {
                throw ModelFormatError.invalidConfig(path: path, reason: "\(key) should be a list of integers, found \($0)")
            }
            return i
        }
    }

    /// Rejects rotary scaling schemes the executor does not implement yet, rather than
    /// silently computing different logits.
    public func rejectRopeScaling() throws {
        guard let scaling = values["rope_scaling"], !(scaling is NSNull) else { return }
        let kind = ((scaling as? [String: Any])?["rope_type"] ?? (scaling as? [String: Any])?["type"]) as? String
        if kind == nil || kind == "default" { return }
        throw ModelFormatError.invalidConfig(path: path, reason: "rope_scaling type \(kind!) is not supported yet")
    }
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

    public func optionalBool(_ suffix: String) throws -> Bool? {
        let key = "\(architecture).\(suffix)"
        guard let v = file.metadata[key] else { return nil }
        guard let b = v.bool else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: key, reason: "expected a bool, found \(v)")
        }
        return b
    }
}
