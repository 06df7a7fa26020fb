import Foundation
import Quantization

/// An opened model: its container (GGUF file or Hugging Face directory), its family and its
/// configuration, with typed access to every weight by ``WeightName``.
public final class ModelSource: Sendable {
    public enum Container: Sendable {
        case gguf(GGUFFile)
        case huggingFace(HFDirectory)
        /// A `.moe` store written by `moe convert`: experts are paged from its records.
        case store(MoEStoreFile)
    }

    public let path: String
    public let container: Container
    public let family: any ModelFamily.Type
    public let configuration: ModelConfiguration

    /// Opens a GGUF file, a Hugging Face directory or a `.moe` store, recognises the family and
    /// validates the configuration. Throws ``ModelFormatError`` for anything it cannot use.
    ///
    /// - Parameter randomAccess: map files without read-ahead (for runs under a memory budget,
    ///   where a fault on a dense tensor must not pull expert bytes into the page cache).
    public init(path: String, randomAccess: Bool = false) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFormatError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            let directory = try HFDirectory(path: path, randomAccess: randomAccess)
            let config = directory.config
            let configPath = (path as NSString).appendingPathComponent("config.json")
            guard let modelType = config["model_type"] as? String else {
                throw ModelFormatError.missingConfigKey(path: configPath, key: "model_type")
            }
            family = try ModelFamilies.family(hfModelType: modelType)
            container = .huggingFace(directory)
            let reader = HFConfigReader(config, path: configPath, configClass: family.hfConfigClass)
            var configuration = try family.configuration(hf: reader)
            configuration.provenance = reader.provenance
            self.configuration = configuration
        } else if ModelSource.hasStoreMagic(path) {
            let store = try MoEStoreFile(file: MappedFile(path: path, randomAccess: randomAccess))
            container = .store(store)
            configuration = store.manifest.configuration
            family = ModelFamilies.family(for: configuration.architecture)
        } else {
            let file = try GGUFFile(file: MappedFile(path: path, randomAccess: randomAccess))
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

    /// Reads the first 8 bytes without read-ahead (a plain read() would pull megabytes of the
    /// file into the page cache, which a run under a memory budget must not do).
    static func hasStoreMagic(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        #if os(Linux)
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
        #endif
        var magic = [UInt8](repeating: 0, count: 8)
        return pread(fd, &magic, 8, 0) == 8 && magic == MoEStoreFile.magic
    }

    /// The weight, or `nil` if the model does not have it. Experts of a `.moe` store are not
    /// weights here: they are paged by the expert store.
    public func weight(_ name: WeightName) throws -> TensorView? {
        switch container {
        case let .store(store):
            return name.stackedGGUFName == nil ? store.dense(name.ggufName) : nil
        case let .gguf(file):
            if let (stacked, expert) = name.stackedGGUFName {
                guard let tensor = file.tensor(stacked) else { return nil }
                guard tensor.shape.count == 3, expert < tensor.shape[2] else {
                    throw ModelFormatError.invalidTensor(path: path, tensor: stacked, reason: "shape \(tensor.shape) has no expert \(expert)")
                }
                return try tensor.slab(expert)
            }
            return file.tensor(family.ggufName(name)) ?? name.alternateGGUFName.flatMap { file.tensor($0) }
        case let .huggingFace(directory):
            if let built = try family.hfTensor(name, in: directory) { return built }
            return try directory.tensor(family.hfName(name))
        }
    }

    /// The file's own name for a weight, for messages.
    public func fileName(of name: WeightName) -> String {
        switch container {
        case .gguf: return name.stackedGGUFName.map { "\($0.tensor) (expert \($0.expert))" } ?? family.ggufName(name)
        case .store: return name.stackedGGUFName.map { "\($0.tensor) (expert \($0.expert))" } ?? name.ggufName
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

    /// Every file mapping the source reads weights through.
    public var mappedFiles: [MappedFile] {
        switch container {
        case let .gguf(file): return [file.file]
        case let .huggingFace(directory): return directory.shards.map(\.file)
        case let .store(store): return [store.file]
        }
    }

    /// The file and absolute byte offset where a view of this source's tensors lies.
    public func fileLocation(of view: TensorView) throws -> (path: String, offset: Int) {
        func locate(_ file: MappedFile) -> (String, Int)? {
            return file.withBytes { bytes in
                guard let base = bytes.baseAddress, let start = view.data.baseAddress, start >= base, start + view.data.count <= base + bytes.count else { return nil }
                return (file.path, start - base)
            }
        }
        switch container {
        case let .gguf(file):
            if let found = locate(file.file) { return found }
        case let .huggingFace(directory):
            for shard in directory.shards { if let found = locate(shard.file) { return found } }
            throw ModelFormatError.invalidTensor(path: path, tensor: view.name, reason: "is built in memory from the checkpoint (\(family.architecture.rawValue) MXFP4 experts are repacked on load), so it cannot be paged from this directory: run it without --memory/--expert-cache, or page it from the GGUF or a store (moe convert keeps MXFP4)")
        case let .store(store):
            if let found = locate(store.file) { return found }
        }
        throw ModelFormatError.invalidTensor(path: path, tensor: view.name, reason: "is not inside any file of this model")
    }

    /// Every tensor in the container with its type, ggml-order shape and size in bytes.
    public var tensorInventory: [(name: String, type: GGMLType, shape: [Int], bytes: Int)] {
        switch container {
        case let .store(store):
            var all = store.manifest.dense.compactMap { t in GGMLType(name: t.type).map { (t.name, $0, t.shape, t.length) } }
            for r in store.manifest.experts {
                for (kind, t) in zip(ExpertTensor.allCases, r.tensors) {
                    if let type = GGMLType(name: t.type) { all.append((kind.weightName(layer: r.layer, expert: r.expert).ggufName, type, t.shape, t.length)) }
                }
            }
            return all
        case let .gguf(file):
            return file.tensors.map { ($0.name, $0.type, $0.dimensions, $0.byteCount) }
        case let .huggingFace(directory):
            return directory.shards.flatMap { shard in
                shard.entries.values.map { e in
                    (e.name, SafetensorsFile.ggmlType(e.dtype) ?? (e.dtype == "U8" ? .i8 : .f32), e.shape.isEmpty ? [1] : Array(e.shape.reversed()), e.end - e.begin)
                }
            }.sorted { $0.name < $1.name }
        }
    }
}
