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

        public init(plan: BitPlan = BitPlan(default: "keep"), compression: StoreWriter.CompressionMode = .auto,
                    calibration: TransitionTable? = nil, diskBandwidth: Double? = nil, importance: [ExpertKey: ExpertImportance]? = nil) {
            self.importance = importance
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
    }

    public static func convert(input: String, output: String, options: Options, progress: ((Progress) -> Void)? = nil) throws -> Report {
        let start = Date()
        let source = try ModelSource(path: input)
        if case .store = source.container {
            throw ModelFormatError.notAModel(path: input, reason: "already a .moe store; convert from the original GGUF or Hugging Face model")
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
        for (i, key) in keys.enumerated() {
            let views = try source.expertTensors(layer: key.layer, expert: key.expert)
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
            let expert = try RequantizedExpert(ExpertWeights(gate: views[0], up: views[1], down: views[2]), to: planned,
                                               importance: options.importance?[key])
            let tensors = [expert.weights.gate, expert.weights.up, expert.weights.down].map { (type: $0.type, shape: $0.shape, bytes: Array($0.data)) }
            try writer.addExpert(layer: key.layer, expert: key.expert, tensors: tensors, compression: options.compression)
            progress?(Progress(expertsDone: i + 1, expertsTotal: keys.count, bytesWritten: writer.storedExpertBytes + denseBytes))
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
            seconds: 0, diskBandwidth: options.compression == .auto ? writer.diskBandwidth : nil, fileSize: writer.fileSize)
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
        case .store:
            break
        }
        return writer
    }
}
