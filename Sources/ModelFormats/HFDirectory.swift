import Foundation

/// A Hugging Face model directory: `config.json`, one or more `*.safetensors` files (with
/// `model.safetensors.index.json` when sharded) and tokenizer files.
public final class HFDirectory: Sendable {
    public let path: String
    /// The bytes of `config.json`, which `init` checked parse to a JSON object. (Kept as bytes,
    /// not as the parsed `[String: Any]` tree, which is not Sendable.)
    private let configData: Data
    public let shards: [SafetensorsFile]
    private let location: [String: Int]

    /// `config.json`, parsed (a fresh tree on every call).
    public var config: [String: Any] {
        (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] ?? [:]  // init checked that it parses
    }

    public init(path: String, randomAccess: Bool = false) throws {
        self.path = path
        let fm = FileManager.default
        let configPath = (path as NSString).appendingPathComponent("config.json")
        guard let configData = fm.contents(atPath: configPath) else {
            throw ModelFormatError.notAModel(path: path, reason: "directory has no config.json")
        }
        guard (try? JSONSerialization.jsonObject(with: configData)) is [String: Any] else {
            throw ModelFormatError.invalidConfig(path: configPath, reason: "not a JSON object")
        }
        self.configData = configData

        var shardNames: [String]
        var weightMap: [String: String]? = nil
        let indexPath = (path as NSString).appendingPathComponent("model.safetensors.index.json")
        if let indexData = fm.contents(atPath: indexPath) {
            guard let index = (try? JSONSerialization.jsonObject(with: indexData)) as? [String: Any],
                let map = index["weight_map"] as? [String: String]
            else {
                throw ModelFormatError.invalidConfig(path: indexPath, reason: "expected an object with a weight_map of tensor name to file")
            }
            for file in Set(map.values) where file.contains("/") || file.hasPrefix(".") {
                throw ModelFormatError.invalidConfig(path: indexPath, reason: "weight_map names a file outside the directory: \(file)")
            }
            weightMap = map
            shardNames = Array(Set(map.values)).sorted()
        } else {
            let listing = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            shardNames = listing.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !shardNames.isEmpty else {
            throw ModelFormatError.notAModel(path: path, reason: "directory has no .safetensors weights")
        }
        var shards: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        for (i, name) in shardNames.enumerated() {
            let shard = try SafetensorsFile(file: MappedFile(path: (path as NSString).appendingPathComponent(name), randomAccess: randomAccess))
            shards.append(shard)
            for tensor in shard.entries.keys {
                if let expected = weightMap?[tensor], expected != name {
                    continue  // the index says another shard owns it
                }
                location[tensor] = i
            }
        }
        if let weightMap {
            for (tensor, file) in weightMap where location[tensor] == nil {
                throw ModelFormatError.invalidTensor(path: (path as NSString).appendingPathComponent(file), tensor: tensor, reason: "listed in model.safetensors.index.json but absent from the shard")
            }
        }
        self.shards = shards
        self.location = location
    }

    public var tensorNames: [String] { Array(location.keys) }

    public func tensor(_ name: String) throws -> TensorView? {
        guard let i = location[name] else { return nil }
        return try shards[i].tensor(name)
    }

    /// A tensor's header entry and bytes whatever its dtype (e.g. GPT-OSS's uint8 MXFP4 blocks,
    /// which have no ggml element type of their own).
    public func raw(_ name: String) -> (entry: SafetensorsFile.Entry, bytes: UnsafeRawBufferPointer)? {
        guard let i = location[name], let entry = shards[i].entries[name] else { return nil }
        let shard = shards[i]
        return (entry, UnsafeRawBufferPointer(rebasing: shard.file.bytes[(shard.dataOffset + entry.begin)..<(shard.dataOffset + entry.end)]))
    }

    /// Contents of another JSON file in the directory (e.g. `tokenizer_config.json`), if present.
    public func json(_ file: String) -> [String: Any]? {
        let p = (path as NSString).appendingPathComponent(file)
        guard let data = FileManager.default.contents(atPath: p) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}
