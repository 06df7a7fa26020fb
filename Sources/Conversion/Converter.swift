import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router
import Tokenizer

/// `moe convert`: a GGUF file or Hugging Face directory to a `.moe` store.
public struct Converter {
    public struct Options: Sendable {
        /// Per-expert types (a uniform plan is `BitPlan(default: "q4_K")`; "keep" stores source bytes).
        public var plan: BitPlan
        public var compression: StoreWriter.CompressionMode
        /// Path statistics (`moe calibrate`) to embed, so `--prefetch path|hybrid` finds them in the store.
        public var calibration: TransitionTable?
        /// Direct-read bytes/s of the storage the store will be read from (`auto` compression
        /// weighs decode time against it); nil measures the input's file system.
        public var diskBandwidth: Double?
        /// Per-expert column importance from `moe calibrate` (activation-aware quantization);
        /// experts without an entry are quantized with the reference encoding.
        public var importance: [ExpertKey: ExpertImportance]?
        /// Also store a small copy of every expert at this type, for `--on-miss lowbit`
        /// (docs/store-format.md, *Miss copies*; the store becomes version 2).
        public var missCopy: GGMLType?

        public init(plan: BitPlan = BitPlan(default: "keep"), compression: StoreWriter.CompressionMode = .auto,
                    calibration: TransitionTable? = nil, diskBandwidth: Double? = nil, importance: [ExpertKey: ExpertImportance]? = nil,
                    missCopy: GGMLType? = nil) {
            self.importance = importance
            self.missCopy = missCopy
            self.plan = plan
            self.compression = compression
            self.calibration = calibration
            self.diskBandwidth = diskBandwidth
        }
    }

    public struct Progress: Sendable {
        public var expertsDone: Int
        public var expertsTotal: Int
        public var bytesWritten: Int
    }

    public struct Report: Codable, Sendable {
        public var output: String
        public var experts: Int
        public var denseTensors: Int
        public var denseBytes: Int
        public var expertBytesDecoded: Int
        public var expertBytesStored: Int
        public var compressedRecords: Int
        /// Tensors written at another type than planned because their rows are not a whole
        /// number of the planned type's blocks (e.g. q4_K needs rows of 256): "q4_K→q4_0: 12".
        public var fallbacks: [String: Int]
        public var typeCounts: [String: Int]
        public var seconds: Double
        /// The read bandwidth `auto` compression decided against (bytes/s), if it applied.
        public var diskBandwidth: Double?
        /// Bytes of the whole store file.
        public var fileSize: Int
        /// The miss copies' type and bytes, when written.
        public var missCopyType: String? = nil
        public var missCopyBytes = 0
    }

    public static func convert(input: String, output: String, options: Options, progress: ((Progress) -> Void)? = nil) throws -> Report {
        let start = Date()
        let source = try ModelSource(path: input)
        var options = options
        if case let .store(store) = source.container, options.calibration == nil, let data = try store.section(TransitionTable.storeSection) {
            // Re-storing a store (e.g. to add miss copies) keeps its path statistics.
            options.calibration = try TransitionTable.decode(data, path: "\(input) (calibration section)")
        }
        let types = try options.plan.resolve(for: source.configuration)
        let writer = try StoreWriter(outputPath: output)
        if options.compression == .auto {
            writer.diskBandwidth = try options.diskBandwidth ?? Converter.directReadBandwidth(source)
        }
        do {
            var report = try write(source: source, input: input, types: types, to: writer, options: options, progress: progress)
            report.output = output
            report.seconds = Date().timeIntervalSince(start)
            return report
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// The size of the store `convert` would write for `plan`, from above: the same layout
    /// with every record uncompressed and every checksum at its widest. Reads no weights.
    public static func storeSize(source: ModelSource, plan: BitPlan, calibration: TransitionTable? = nil) throws -> Int {
        let writer = StoreWriter.measuring()
        let types = try plan.resolve(for: source.configuration)
        _ = try write(source: source, input: source.path, types: types, to: writer,
                      options: Options(plan: plan, compression: .none, calibration: calibration))
        return writer.fileSize
    }

    /// Writes every part of the store to `writer` (a measuring writer gets placeholders for
    /// the experts instead of their quantized bytes).
    static func write(source: ModelSource, input: String, types: [ExpertKey: GGMLType?], to writer: StoreWriter, options: Options,
                      progress: ((Progress) -> Void)? = nil) throws -> Report {
        let c = source.configuration
        // Dense tensors, as stored in the source.
        var denseNames: [WeightName] = [.tokenEmbedding, .outputNorm, .output]
        for l in 0..<c.layerCount { denseNames += WeightName.layerDenseNames(l) }
        var denseCount = 0, denseBytes = 0
        for name in denseNames {
            guard let view = try source.weight(name) else { continue }
            try writer.addDense(name: name.ggufName, type: view.type, shape: view.shape, bytes: view.data)
            denseCount += 1
            denseBytes += view.data.count
        }
        try writer.setTokenizer(tokenizerMetadata(source))

        // Experts, one record each, at their planned types.
        var fallbacks: [String: Int] = [:], typeCounts: [String: Int] = [:]
        let keys = types.keys.sorted { ($0.layer, $0.expert) < ($1.layer, $1.expert) }
        let experts = try ExpertSourceReader(source)
        for (i, key) in keys.enumerated() {
            let views = try experts.shapes(key)
            let planned = types[key] ?? nil
            let layout = try StoreLayout.record(of: views.map { ($0.type, $0.shape) }, at: planned, expert: "\(input): expert \(key.expert) of layer \(key.layer)")
            for (view, t) in zip(views, layout.tensors) {
                typeCounts[t.type.description, default: 0] += 1
                if let planned, planned != view.type, t.type != planned { fallbacks["\(planned)→\(t.type)", default: 0] += 1 }
            }
            if writer.isMeasuring {
                try writer.addExpertPlaceholder(layer: key.layer, expert: key.expert, layout: layout)
                continue
            }
            // The same requantization the calibration measured (RequantizedExpert), copied out.
            let expert = try experts.requantized(key, to: planned, importance: options.importance?[key])
            let tensors = [expert.weights.gate, expert.weights.up, expert.weights.down].map { (type: $0.type, shape: $0.shape, bytes: Array($0.data)) }
            try writer.addExpert(layer: key.layer, expert: key.expert, tensors: tensors, compression: options.compression)
            progress?(Progress(expertsDone: i + 1, expertsTotal: keys.count, bytesWritten: writer.storedExpertBytes + denseBytes))
        }
        if let type = options.missCopy {
            // After every exact record, so the exact experts stay contiguous.
            for key in keys {
                let views = try experts.shapes(key)
                if writer.isMeasuring {
                    let layout = try StoreLayout.record(of: views.map { ($0.type, $0.shape) }, at: type, expert: "\(input): expert \(key.expert) of layer \(key.layer)")
                    try writer.addMissCopy(layer: key.layer, expert: key.expert, planned: type,
                                           tensors: layout.tensors.map { (type: $0.type, shape: $0.shape, bytes: [UInt8](repeating: 0, count: $0.length)) })
                    continue
                }
                let copy = try experts.requantized(key, to: type)
                try writer.addMissCopy(layer: key.layer, expert: key.expert, planned: type,
                                       tensors: [copy.weights.gate, copy.weights.up, copy.weights.down].map { (type: $0.type, shape: $0.shape, bytes: Array($0.data)) })
            }
        }
        if let calibration = options.calibration {
            let moeLayers = c.moeLayers
            guard calibration.layers == moeLayers, calibration.expertCount == c.expertCount else {
                throw PredictorError.mismatch(path: input, reason: "the calibration has \(calibration.layers.count) MoE layers × \(calibration.expertCount) experts")
            }
            // Sorted keys: the same input gives the same store, byte for byte.
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try writer.addSection(TransitionTable.storeSection, bytes: try encoder.encode(calibration))
        }
        try writer.finish(configuration: c, source: input)
        return Report(
            output: writer.outputPath, experts: keys.count, denseTensors: denseCount, denseBytes: denseBytes,
            expertBytesDecoded: writer.rawExpertBytes, expertBytesStored: writer.storedExpertBytes,
            compressedRecords: writer.compressedRecords, fallbacks: fallbacks, typeCounts: typeCounts,
            seconds: 0, diskBandwidth: options.compression == .auto ? writer.diskBandwidth : nil, fileSize: writer.fileSize,
            missCopyType: writer.missCopyType?.description, missCopyBytes: writer.missCopyBytes)
    }

    /// O_DIRECT read bandwidth of the source's first file (up to 256 MiB in 8 MiB reads), the
    /// stand-in for the storage the store will be paged from.
    static func directReadBandwidth(_ source: ModelSource) throws -> Double {
        guard let path = source.mappedFiles.first?.path else { return 1.5e9 }
        let reader = try DirectReader(path: path)
        let chunk = 8 << 20
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let limit = min(size / chunk * chunk, 256 << 20)
        guard limit >= chunk else { return 1.5e9 }  // too small to measure; assume an SSD
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: DirectReader.alignment)
        defer { buffer.deallocate() }
        let start = DispatchTime.now().uptimeNanoseconds
        var offset = 0
        while offset < limit {
            try reader.read(offset: offset, length: chunk, into: buffer)
            offset += chunk
        }
        return Double(limit) / max(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9, 1e-6)
    }

    /// The source's tokenizer as metadata-only GGUF: `tokenizer.*` keys of a GGUF, or the
    /// Hugging Face tokenizer files as strings.
    static func tokenizerMetadata(_ source: ModelSource) throws -> GGUFWriter {
        var writer = GGUFWriter()
        switch source.container {
        case let .gguf(file):
            for key in file.metadataKeys where key.hasPrefix("tokenizer.") {
                if let value = file.metadata[key] { writer.set(key, value) }
            }
        case let .huggingFace(directory):
            for name in Tokenizer.huggingFaceFiles {
                let path = (directory.path as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                if Tokenizer.binaryHuggingFaceFiles.contains(name) {
                    writer.set(Tokenizer.embeddedFilePrefix + name, .array(.uint8, data.map { .uint8($0) }))
                } else {
                    writer.set(Tokenizer.embeddedFilePrefix + name, .string(String(decoding: data, as: UTF8.self)))
                }
            }
        case let .store(store):
            if let gguf = try store.tokenizerGGUF() {
                for key in gguf.metadataKeys { if let value = gguf.metadata[key] { writer.set(key, value) } }
            }
        }
        return writer
    }
}

/// The experts of a conversion's source: views into a GGUF or Hugging Face file, or, for a
/// `.moe` store (re-stored, e.g. to add miss copies), its records read one at a time through a
/// paged store of one expert.
struct ExpertSourceReader {
    let source: ModelSource
    let catalog: ExpertCatalog?
    let paged: PagedExpertStore?

    init(_ source: ModelSource) throws {
        self.source = source
        if case .store = source.container {
            let catalog = try ExpertCatalog(source: source)
            self.catalog = catalog
            paged = try PagedExpertStore(catalog: catalog, capacity: catalog.largestActiveSet(k: 1) + ExpertPool.alignment)
        } else {
            catalog = nil
            paged = nil
        }
    }

    /// Types and ggml shapes of gate, up and down.
    func shapes(_ key: ExpertKey) throws -> [(type: GGMLType, shape: [Int])] {
        if let catalog {
            guard let entry = catalog.entry(key) else { throw ExpertStoreError.noSuchExpert(layer: key.layer, expert: key.expert) }
            return entry.tensors.map { ($0.type, $0.shape) }
        }
        return try source.expertTensors(layer: key.layer, expert: key.expert).map { ($0.type, $0.shape) }
    }

    /// The expert at `type` (nil: its bytes unchanged), in memory the result owns.
    func requantized(_ key: ExpertKey, to type: GGMLType?, importance: ExpertImportance? = nil) throws -> RequantizedExpert {
        if let paged {
            return try paged.withExpert(layer: key.layer, expert: key.expert) { try RequantizedExpert($0, to: type, importance: importance) }
        }
        let views = try source.expertTensors(layer: key.layer, expert: key.expert)
        return try RequantizedExpert(ExpertWeights(gate: views[0], up: views[1], down: views[2]), to: type, importance: importance)
    }
}
