import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router
import Runtime

/// How much quality each expert loses at each candidate type: the quality side of the bit
/// planner (`moe convert --target-size`, `--max-ppl-increase`). Written by `moe calibrate`
/// into the calibration file, next to the routing statistics.
///
/// Each measurement lowers one expert (alone) to one type and reruns the calibration
/// windows: `kld` is the mean KL divergence of the next-token distributions from the model as
/// loaded, over every scored position (so an expert that fires rarely has a small loss), and
/// `deltaNLL` the change in mean negative log-likelihood of the actual text.
public struct SensitivityTable: Codable, Sendable, Equatable {
    public struct Settings: Codable, Sendable, Equatable {
        /// The model measured, as given, and a fingerprint of its configuration and expert tensors.
        public var model: String
        public var modelFingerprint: String
        /// The calibration text and a hash of its tokens.
        public var text: String
        public var tokensHash: String
        /// Windows of `context` tokens (BOS first when the tokenizer adds one).
        public var context: Int
        public var windows: Int
        /// Candidate types, in the order measured.
        public var types: [String]

        public init(model: String, modelFingerprint: String, text: String, tokensHash: String, context: Int, windows: Int, types: [String]) {
            self.model = model
            self.modelFingerprint = modelFingerprint
            self.text = text
            self.tokensHash = tokensHash
            self.context = context
            self.windows = windows
            self.types = types
        }

        /// The hash `tokensHash` holds: XXH64 of the windows' token ids as 32-bit integers.
        public static func tokensHash(of windows: [[Int]]) -> String {
            String(windows.joined().map { UInt32(truncatingIfNeeded: $0) }.withUnsafeBytes { XXH64.hash($0) }, radix: 16)
        }
    }

    public struct Measurement: Codable, Sendable, Equatable {
        public var layer: Int
        public var expert: Int
        public var type: String
        public var kld: Double
        public var deltaNLL: Double

        public init(layer: Int, expert: Int, type: String, kld: Double, deltaNLL: Double) {
            self.layer = layer
            self.expert = expert
            self.type = type
            self.kld = kld
            self.deltaNLL = deltaNLL
        }
    }

    public var format = "swiftmoe-sensitivity"
    /// 2 adds `method`; version 1 files (no method) are measured ones.
    public var version = 2
    /// How the losses were obtained: "measured" (KL divergence of the model run with the expert
    /// lowered; nats/token) or "proxy" (``ProxySensitivity``: activation-weighted squared output
    /// error per token of the text, in the model's activation units, comparable across experts
    /// but not a KL divergence). Absent in version 1 files: measured.
    public var method: String?
    public var settings: Settings
    /// Mean NLL of the model as loaded on the scored positions (perplexity = exp of it).
    public var baseNLL: Double
    /// Scored positions (windows × (context − 1)).
    public var scoredTokens: Int
    /// Types of the source's expert tensors (gate, up, down), e.g. ["f32", "f32", "f32"].
    public var sourceTypes: [String]
    /// One entry per expert and type, in layer, expert, type order.
    public var measurements: [Measurement]
    /// Tokens of the windows routed to each expert, `activations[i][e]` for the i-th MoE layer:
    /// how many uses each measurement is based on (the knapsack planner turns it into a loss per use).
    public var activations: [[Int]]?

    public init(settings: Settings, baseNLL: Double, scoredTokens: Int, sourceTypes: [String], measurements: [Measurement] = []) {
        self.settings = settings
        self.baseNLL = baseNLL
        self.scoredTokens = scoredTokens
        self.sourceTypes = sourceTypes
        self.measurements = measurements
    }

    /// The key of ``byKey`` for one expert at one type.
    public static func key(_ layer: Int, _ expert: Int, _ type: String) -> String { "\(layer)/\(expert)/\(type)" }

    /// Index from ``key(_:_:_:)`` to measurement.
    public var byKey: [String: Measurement] {
        Dictionary(measurements.map { (SensitivityTable.key($0.layer, $0.expert, $0.type), $0) }, uniquingKeysWith: { a, _ in a })
    }

    public var isProxy: Bool { method == "proxy" }

    public func isComplete(experts: Int) -> Bool { measurements.count >= experts * settings.types.count }
}

/// The file `moe calibrate` writes: the routing statistics (``TransitionTable``, whose keys sit
/// at the top level so `--prefetch path` reads the same file) and the sensitivity table.
public struct CalibrationFile: Sendable, Equatable {
    public var routing: TransitionTable
    public var sensitivity: SensitivityTable?
    /// Per-expert activation statistics of the routing pass (imatrix and proxy inputs).
    public var activations: ActivationStatistics?

    public init(routing: TransitionTable, sensitivity: SensitivityTable? = nil, activations: ActivationStatistics? = nil) {
        self.routing = routing
        self.sensitivity = sensitivity
        self.activations = activations
    }

    /// Reads and checks the file, in pieces (``ModelFormats/JSONPullReader``): its peak memory is about
    /// what the result holds (plus, for activation statistics, their base64 text once), where
    /// `JSONDecoder` took about 14 times the file's size.
    public static func load(path: String) throws -> CalibrationFile {
        let reader: JSONPullReader
        do { reader = try JSONPullReader(path: path) } catch {
            throw PredictorError.invalidCalibration(path: path, reason: "cannot read the file")
        }
        var sensitivity: SensitivityTable?
        var stored: ActivationStatistics.Stored?
        let routing = try TransitionTable.read(reader, path: path) { key in
            do {
                switch key {
                case "sensitivity": sensitivity = try reader.null() ? nil : try SensitivityTable.read(reader)
                case "activations": stored = try reader.null() ? nil : try ActivationStatistics.Stored.read(reader)
                default: try reader.skip()
                }
            } catch let error as DecodingError {
                throw PredictorError.invalidCalibration(path: path, reason: "\(Self.section(key)) is not valid (\(ModelFormatError.shown(decoding: error)))")
            } catch let failure as JSONPullReader.Failure where key == "sensitivity" || key == "activations" {
                throw PredictorError.invalidCalibration(path: path, reason: "\(Self.section(key)) is not valid (\(ModelFormatError.shown(failure.description)))")
            }
        }
        let activations = try stored.map { try ActivationStatistics(stored: $0, routing: routing, path: path) }
        if let s = sensitivity {
            guard s.format == "swiftmoe-sensitivity", (1...2).contains(s.version), s.settings.windows > 0, s.settings.context >= 2,
                  !s.settings.types.isEmpty, s.method == nil || s.method == "measured" || s.method == "proxy" else {
                throw PredictorError.invalidCalibration(path: path, reason: "sensitivity format \(ModelFormatError.shown(s.format)) version \(s.version) is not swiftmoe-sensitivity version 1 or 2 (method measured or proxy)")
            }
            if let a = s.activations {
                guard a.count == routing.layers.count, a.allSatisfy({ $0.count == routing.expertCount && $0.allSatisfy { $0 >= 0 } }) else {
                    throw PredictorError.invalidCalibration(path: path, reason: "sensitivity activations do not match \(routing.layers.count) layers × \(routing.expertCount) experts")
                }
            }
            for m in s.measurements {
                guard routing.layers.contains(m.layer), m.expert >= 0, m.expert < routing.expertCount,
                      s.settings.types.contains(m.type), m.kld.isFinite, m.deltaNLL.isFinite else {
                    throw PredictorError.invalidCalibration(path: path, reason: "sensitivity of expert \(m.expert) of layer \(m.layer) at \(m.type) is out of range")
                }
            }
        }
        return CalibrationFile(routing: routing, sensitivity: sensitivity, activations: activations)
    }

    static func section(_ key: String) -> String { key == "sensitivity" ? "the sensitivity table" : "the activation statistics" }

    /// Writes the file atomically (a temporary file renamed into place), so an interrupted
    /// calibration always leaves the last complete state.
    public func write(to path: String) throws {
        try AtomicFile.write(to: path) { file in
            var buffer = Data()
            buffer.reserveCapacity(CalibrationFile.writeBuffer)
            try write { piece in
                buffer.append(piece)
                guard buffer.count >= CalibrationFile.writeBuffer else { return }
                try buffer.withUnsafeBytes { try file.write($0) }
                buffer.removeAll(keepingCapacity: true)
            }
            try buffer.withUnsafeBytes { try file.write($0) }
        }
    }

    /// Bytes gathered before each write(2) of the file.
    static let writeBuffer = 1 << 20

    /// The file's bytes, in pieces: the routing table's members and the two sections as one
    /// object with sorted keys, as `JSONEncoder` writes it, without the whole file, an object
    /// graph of it or a copy of the statistics in memory (a save costs what `moe calibrate`'s
    /// memory plan reserves for it, ``CalibrationMemory``).
    func write(to sink: TransitionTable.JSONSink) throws {
        var extra: [String: (TransitionTable.JSONSink) throws -> Void] = [:]
        if let sensitivity { extra["sensitivity"] = { try sensitivity.writeJSON(to: $0) } }
        if let activations { extra["activations"] = { try activations.writeStored(to: $0) } }
        try routing.writeJSON(merging: extra, to: sink)
    }
}

extension SensitivityTable {
    /// The table from `reader` (the value of a calibration file's `sensitivity` member): the
    /// measurements one by one, the small members through `JSONDecoder`.
    static func read(_ reader: JSONPullReader) throws -> SensitivityTable {
        var format: String?, version: Int?, method: String?, settings: Settings?, baseNLL: Double?, scoredTokens: Int?
        var sourceTypes: [String]?, measurements: [Measurement]?, activations: [[Int]]?
        func missing(_ key: String) -> JSONPullReader.Failure { reader.fail("the sensitivity table has no \(key)") }
        try reader.object { key in
            switch key {
            case "format": format = try reader.string(limit: 256)
            case "version": version = try reader.int()
            case "method": method = try reader.null() ? nil : try reader.string(limit: 256)
            case "settings": settings = try JSONDecoder().decode(Settings.self, from: try reader.raw(limit: 1 << 20))
            case "baseNLL": baseNLL = try reader.double()
            case "scoredTokens": scoredTokens = try reader.int()
            case "sourceTypes": sourceTypes = try reader.strings(limit: 256)
            case "activations": activations = try reader.null() ? nil : try reader.intRows()
            case "measurements":
                var out: [Measurement] = []
                try reader.array { _ in out.append(try Measurement.read(reader)) }
                measurements = out
            default: try reader.skip()
            }
        }
        guard let format else { throw missing("format") }
        guard let version else { throw missing("version") }
        guard let settings else { throw missing("settings") }
        guard let baseNLL else { throw missing("baseNLL") }
        guard let scoredTokens else { throw missing("scoredTokens") }
        guard let sourceTypes else { throw missing("sourceTypes") }
        guard let measurements else { throw missing("measurements") }
        var table = SensitivityTable(settings: settings, baseNLL: baseNLL, scoredTokens: scoredTokens, sourceTypes: sourceTypes,
                                     measurements: measurements)
        table.format = format
        table.version = version
        table.method = method
        table.activations = activations
        return table
    }

    /// Measurements per piece written.
    static let pieceMeasurements = 1024

    /// The table's JSON as `JSONEncoder` with sorted keys writes it, to `sink` in pieces of
    /// ``pieceMeasurements`` measurements (an encoder's value tree of all of them would take
    /// many times their size).
    func writeJSON(to sink: TransitionTable.JSONSink) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var first = true
        func key(_ name: String) throws {
            try sink(Data(((first ? "{" : ",") + "\"\(name)\":").utf8))
            first = false
        }
        func member(_ name: String, _ value: (some Encodable)?) throws {
            guard let value else { return }
            try key(name)
            try sink(try encoder.encode(value))
        }
        try member("activations", activations)
        try member("baseNLL", baseNLL)
        try member("format", format)
        try key("measurements")
        try sink(Data("[".utf8))
        var start = 0
        while start < measurements.count {
            let end = min(start + SensitivityTable.pieceMeasurements, measurements.count)
            // The encoded slice without its brackets, joined to the previous one by a comma.
            let encoded = try encoder.encode(Array(measurements[start..<end]))
            try sink((start > 0 ? Data(",".utf8) : Data()) + encoded.dropFirst().dropLast())
            start = end
        }
        try sink(Data("]".utf8))
        try member("method", method)
        try member("scoredTokens", scoredTokens)
        try member("settings", settings)
        try member("sourceTypes", sourceTypes)
        try member("version", version)
        try sink(Data("}".utf8))
    }
}

extension SensitivityTable.Measurement {
    static func read(_ reader: JSONPullReader) throws -> SensitivityTable.Measurement {
        var layer: Int?, expert: Int?, type: String?, kld: Double?, deltaNLL: Double?
        try reader.object { key in
            switch key {
            case "layer": layer = try reader.int()
            case "expert": expert = try reader.int()
            case "type": type = try reader.string(limit: 256)
            case "kld": kld = try reader.double()
            case "deltaNLL": deltaNLL = try reader.double()
            default: try reader.skip()
            }
        }
        guard let layer, let expert, let type, let kld, let deltaNLL else {
            throw reader.fail("a measurement without layer, expert, type, kld and deltaNLL")
        }
        return SensitivityTable.Measurement(layer: layer, expert: expert, type: type, kld: kld, deltaNLL: deltaNLL)
    }
}

extension ModelSource {
    /// A fingerprint of the configuration and of every expert tensor's type and shape: a
    /// calibration taken on one model is refused for another.
    public func expertFingerprint() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var bytes = [UInt8](try encoder.encode(configuration))
        let catalog = try ExpertCatalog(source: self)
        for l in 0..<catalog.layerCount {
            for e in 0..<catalog.expertCount {
                guard let entry = catalog.entry(ExpertKey(layer: l, expert: e)) else { continue }
                for t in entry.tensors { bytes += Array("\(l)/\(e):\(t.type)\(t.shape);".utf8) }
            }
        }
        return String(XXH64.hash(bytes), radix: 16)
    }
}

extension Model {
    /// The expert tensors (gate, up, down) of `key`, as stored in the source.
    func sourceLayout(_ key: ExpertKey) throws -> [(type: GGMLType, shape: [Int])] {
        try withExpertWeights(key) { w in [w.gate, w.up, w.down].map { ($0.type, $0.shape) } }
    }

    public struct SensitivityProgress: Sendable {
        public var done: Int
        public var total: Int
        /// Measurements taken in this run (the rest came from the file being resumed).
        public var measuredNow: Int
        public var last: SensitivityTable.Measurement?
    }

    /// Measures every MoE expert at every type of `settings.types`, one expert at a time,
    /// skipping measurements `resume` already holds (it must have the same settings).
    /// `save` is called with the table so far at most every `saveInterval` seconds and at
    /// the end, so an interrupted run loses little.
    public func measureSensitivity(
        windows: [[Int]], settings: SensitivityTable.Settings, resume: SensitivityTable? = nil, saveInterval: Double = 10,
        save: @escaping (SensitivityTable) throws -> Void, progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityTable {
        let types = try SensitivityRecorder.candidateTypes(settings)
        let probe = try QualityProbe(model: self, windows: windows)
        let c = configuration
        let keys = try moeExpertKeys()
        var table = SensitivityTable(settings: settings, baseNLL: probe.baseNLL, scoredTokens: windows.count * probe.scoredPerWindow,
                                     sourceTypes: try sourceLayout(keys[0]).map(\.type.description))
        table.method = "measured"
        table.activations = c.moeLayers.map { l in
            (0..<c.expertCount).map { probe.routedTokens[ExpertKey(layer: l, expert: $0)] ?? 0 }
        }
        var recorder = try SensitivityRecorder(table: table, resume: resume, total: keys.count * types.count, saveInterval: saveInterval,
                                               save: save, progress: progress)
        for key in keys {
            for (name, type) in zip(settings.types, types) {
                if let m = recorder.resumed(key, name) {
                    recorder.record(m, resumed: true)
                    continue
                }
                let replacement = try withExpertWeights(key) { try RequantizedExpert($0, to: type) }
                let drift = try probe.drift([key: replacement])
                recorder.record(SensitivityTable.Measurement(layer: key.layer, expert: key.expert, type: name, kld: drift.kld, deltaNLL: drift.deltaNLL))
                try recorder.saveIfDue()
            }
        }
        return try recorder.finish()
    }

    /// Every MoE expert, layer by layer; throws when the model has none.
    func moeExpertKeys() throws -> [ExpertKey] {
        let c = configuration
        let keys = c.moeLayers.flatMap { l in (0..<c.expertCount).map { ExpertKey(layer: l, expert: $0) } }
        guard !keys.isEmpty else {
            throw ModelFormatError.invalidConfig(path: source.path, reason: "the model has no MoE layers to calibrate")
        }
        return keys
    }

    /// The expert's weights as the model's store serves them (a store request of the model's:
    /// serialized like its forward passes).
    func withExpertWeights<R>(_ key: ExpertKey, _ body: (ExpertWeights) throws -> R) throws -> R {
        try withExclusiveAccess { try transformer.experts.withExpert(layer: key.layer, expert: key.expert, body) }
    }
}

/// The bookkeeping both sensitivity passes (measured and proxy) share: the table being filled
/// in layer, expert, type order, the measurements a resumed file already holds, progress
/// reports and saves at most every `saveInterval` seconds and at the end.
struct SensitivityRecorder {
    private(set) var table: SensitivityTable
    private let done: [String: SensitivityTable.Measurement]
    private let total: Int
    private let saveInterval: Double
    private let save: (SensitivityTable) throws -> Void
    private let progress: ((Model.SensitivityProgress) -> Void)?
    private var lastSave = Date()
    private var measuredNow = 0

    /// `resume` must have `table`'s settings and method.
    init(table: SensitivityTable, resume: SensitivityTable?, total: Int, saveInterval: Double,
         save: @escaping (SensitivityTable) throws -> Void, progress: ((Model.SensitivityProgress) -> Void)?) throws {
        if let resume {
            guard resume.settings == table.settings, resume.isProxy == table.isProxy else {
                throw PredictorError.mismatch(path: table.settings.model, reason: "the file being resumed holds sensitivities of other settings (model, text, context, windows or types) or method")
            }
        }
        self.table = table
        self.done = resume?.byKey ?? [:]
        self.total = total
        self.saveInterval = saveInterval
        self.save = save
        self.progress = progress
    }

    /// The types of `settings.types` (nil: keep); throws naming one the store cannot write.
    static func candidateTypes(_ settings: SensitivityTable.Settings) throws -> [GGMLType?] {
        try settings.types.map { name in
            guard let t = BitPlan.storableType(name) ?? nil else {
                throw BitPlan.Error.invalid(path: "--types", reason: "\(name) is not a type the store can write (\(BitPlan.writableTypeNames))")
            }
            return t
        }
    }

    /// The measurement of `key` at `type` the resumed file holds, if any.
    func resumed(_ key: ExpertKey, _ type: String) -> SensitivityTable.Measurement? {
        done[SensitivityTable.key(key.layer, key.expert, type)]
    }

    /// Appends a measurement: one taken in this run (reported as progress) or a resumed one.
    mutating func record(_ m: SensitivityTable.Measurement, resumed: Bool = false) {
        table.measurements.append(m)
        guard !resumed else { return }
        measuredNow += 1
        progress?(Model.SensitivityProgress(done: table.measurements.count, total: total, measuredNow: measuredNow, last: m))
    }

    /// Saves when `saveInterval` seconds have passed since the last save.
    mutating func saveIfDue() throws {
        guard Date().timeIntervalSince(lastSave) >= saveInterval else { return }
        try save(table)
        lastSave = Date()
    }

    /// Saves and returns the complete table.
    func finish() throws -> SensitivityTable {
        try save(table)
        return table
    }
}
