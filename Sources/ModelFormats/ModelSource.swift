import Foundation
import Quantization

/// An opened model: its container (GGUF file or Hugging Face directory), its family and its
/// configuration, with typed access to every weight by ``WeightName``.
public final class ModelSource: @unchecked Sendable {
    public enum Container: Sendable {
        case gguf(GGUFFile)
        case huggingFace(HFDirectory)
    }

    public let path: String
    public let container: Container
    public let family: any ModelFamily.Type
    public let configuration: ModelConfiguration

    /// Opens a GGUF file or a Hugging Face directory, recognises the family and validates the
    /// configuration. Throws ``ModelFormatError`` for anything it cannot use.
    public init(path: String) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFormatError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            let directory = try HFDirectory(path: path)
            let reader = HFConfigReader(directory.config, path: (path as NSString).appendingPathComponent("config.json"))
            guard let modelType = directory.config["model_type"] as? String else {
                throw ModelFormatError.missingConfigKey(path: reader.path, key: "model_type")
            }
            family = try ModelFamilies.family(hfModelType: modelType)
            container = .huggingFace(directory)
            configuration = try family.configuration(hf: reader)
        } else {
            let file = try GGUFFile(path: path)
            guard let arch = file.architecture else {
                throw ModelFormatError.invalidMetadata(path: path, key: "general.architecture", reason: "required key is missing")
            }
            family = try ModelFamilies.family(ggufArchitecture: arch)
            guard let embedding = file.tensor(WeightName.tokenEmbedding.ggufName), embedding.shape.count == 2 else {
                throw ModelFormatError.missingTensor(WeightName.tokenEmbedding.ggufName, model: path)
            }
            let tied = file.tensor(WeightName.output.ggufName) == nil
            container = .gguf(file)
            configuration = try family.configuration(
                gguf: GGUFMetadataReader(file, architecture: arch), vocabSize: embedding.shape[1], tied: tied)
        }
        try configuration.validate(source: path)
    }

    /// The weight, or `nil` if the model does not have it.
    public func weight(_ name: WeightName) throws -> TensorView? {
        switch container {
        case let .gguf(file):
            if let (stacked, expert) = name.stackedGGUFName {
                guard let tensor = file.tensor(stacked) else { return nil }
                guard tensor.shape.count == 3, expert < tensor.shape[2] else {
                    throw ModelFormatError.invalidTensor(path: path, tensor: stacked, reason: "shape \(tensor.shape) has no expert \(expert)")
                }
                return try tensor.slab(expert)
            }
            return file.tensor(name.ggufName)
        case let .huggingFace(directory):
            return try directory.tensor(family.hfName(name))
        }
    }

    /// The file's own name for a weight, for messages.
    public func fileName(of name: WeightName) -> String {
        switch container {
        case .gguf: return name.stackedGGUFName.map { "\($0.tensor) (expert \($0.expert))" } ?? name.ggufName
        case .huggingFace: return family.hfName(name)
        }
    }

    /// The weight, checked against the shape the configuration implies (ggml order).
    public func require(_ name: WeightName, shape: [Int]) throws -> TensorView {
        guard let tensor = try weight(name) else {
            throw ModelFormatError.missingTensor(fileName(of: name), model: path)
        }
        try check(tensor, name, shape: shape)
        return tensor
    }

    /// Like ``require(_:shape:)`` for weights a model may lack.
    public func optional(_ name: WeightName, shape: [Int]) throws -> TensorView? {
        guard let tensor = try weight(name) else { return nil }
        try check(tensor, name, shape: shape)
        return tensor
    }

    private func check(_ tensor: TensorView, _ name: WeightName, shape: [Int]) throws {
        // A 1-D weight may be stored as [n] or [n, 1]; compare without trailing ones.
        func trimmed(_ s: [Int]) -> [Int] {
            var s = s
            while s.count > 1, s.last == 1 { s.removeLast() }
            return s
        }
        guard trimmed(tensor.shape) == trimmed(shape) else {
            throw ModelFormatError.shapeMismatch(tensor: fileName(of: name), expected: shape, found: tensor.shape)
        }
        guard tensor.type.isComputable else {
            throw ModelFormatError.unsupportedType(tensor: fileName(of: name), type: tensor.type.description)
        }
    }

    /// Every tensor in the container with its type, ggml-order shape and size in bytes.
    public var tensorInventory: [(name: String, type: GGMLType, shape: [Int], bytes: Int)] {
        switch container {
        case let .gguf(file):
            return file.tensors.map { ($0.name, $0.type, $0.dimensions, $0.byteCount) }
        case let .huggingFace(directory):
            return directory.shards.flatMap { shard in
                shard.entries.values.map { e in
                    (e.name, SafetensorsFile.ggmlType(e.dtype) ?? .f32, e.shape.isEmpty ? [1] : Array(e.shape.reversed()), e.end - e.begin)
                }
            }.sorted { $0.name < $1.name }
        }
    }
}
