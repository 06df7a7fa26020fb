import ArgumentParser
import Foundation
import SwiftMoE

extension CalibrationDefaults.SensitivityMethod: ExpressibleByArgument {}

struct Calibrate: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model on a text: which experts fire (for --prefetch path/hybrid), what each expert's inputs look like (activation-aware quantization in moe convert) and how much quality each loses at each type (for moe convert --target-size / --max-ppl-increase).",
        discussion: """
            One routed pass over the text records per-layer expert frequencies, layer-to-layer \
            transitions and, for every expert, per-column sums of squares of its inputs and of its \
            down projection's inputs (llama.cpp's imatrix) and its use count. Then sensitivities: \
            --sensitivity proxy (default) predicts each expert's loss at each of --types from those \
            statistics, quantizing each expert once per type and running nothing more; \
            --sensitivity measured lowers one expert at a time and measures, on the first \
            --sensitivity-windows windows of --ctx-size tokens, the mean KL divergence from the \
            model as given (experts × types reruns: small models only). The result \
            file is rewritten every few seconds; run the same command again to resume an \
            interrupted calibration. Results are deterministic for a given model, text and settings. \
            Under --memory, the statistics, the saves of the file and the sensitivity step's copies \
            count in the budget: they are taken from the expert pool.

            Calibrate the model you will convert (the GGUF or Hugging Face original, ideally F16/BF16/F32). \
            Writes MODEL.calibration.json next to the model unless -o is given; runs pick it up automatically.
            """)

    @OptionGroup var model: ModelArgument
    @OptionGroup var runtime: RuntimeOptions
    @Option(help: "A UTF-8 text file, ideally like what the model will see.") var text: String
    @Option(name: .shortAndLong, help: "Where to write the statistics (default: MODEL.calibration.json).") var output: String?
    @OptionGroup var window: ContextWindowOption
    @Option(name: .customLong("max-tokens"), help: "Route at most this many tokens of the text (default: all).") var maxTokens: Int?
    @Option(help: "Candidate types for the sensitivity pass, comma-separated. Each adds one quantization of every expert (proxy) or one rerun per expert (measured).")
    var types: String = CalibrationDefaults.types
    @Option(help: "proxy (default): predicted from the routing pass's activation statistics, cost independent of the expert count; measured: KL divergence with each expert lowered alone, experts × types reruns (small models).")
    var sensitivity: CalibrationDefaults.SensitivityMethod = CalibrationDefaults.sensitivity
    @Option(name: .customLong("sensitivity-windows"), help: "Windows of --ctx-size tokens each measured sensitivity reruns (and moe convert --max-ppl-increase checks). More: steadier numbers, proportionally slower.")
    var sensitivityWindows: Int = CalibrationDefaults.sensitivityWindows
    @Flag(name: .customLong("no-sensitivity"), help: "Only record routing statistics (seconds instead of minutes).") var noSensitivity = false
    @Flag(help: "Discard measurements in the output file instead of resuming them.") var restart = false
    @Flag(help: "Print the summary as JSON.") var json = false

    func check() throws {
        guard sensitivityWindows >= 1 else { throw ValidationError("--sensitivity-windows must be at least 1") }
        if let maxTokens { guard maxTokens >= 2 else { throw ValidationError("--max-tokens must be at least 2") } }
        for name in typeList where BitPlan.storableType(name) == nil || name.lowercased() == "keep" {
            throw ValidationError("--types: \(name) is not a type the store can write (\(BitPlan.writableTypeNames))")
        }
        guard !typeList.isEmpty, Set(typeList).count == typeList.count else { throw ValidationError("--types needs distinct type names") }
    }

    /// glibc's `malloc_trim(0)` (not in Swift's Glibc module; looked up at run time), a no-op elsewhere.
    static func releaseFreedHeap() {
        #if os(Linux)
        typealias Trim = @convention(c) (Int) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        #endif
    }

    var typeList: [String] { types.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() throws {
        try reportingErrors {
            // Ctrl-C or SIGTERM: no temporary file left behind; the output is whole or as it was.
            PartialFiles.removeOnInterrupt()
            // Everything the run holds besides the model is loaded, or reserved, before the model
            // opens: the memory plan counts what is resident then and takes the reservation from
            // the expert pool, so the whole run stays under --memory (CalibrationMemory).
            let path = self.model.model
            let content = try readText(text)
            let tokenizer = try Tokenizer(path: path)
            var tokens = tokenizer.encode(content)
            if let maxTokens { tokens = Array(tokens.prefix(maxTokens)) }
            let out = output ?? Model.calibrationPath(for: path)
            let previous = !restart && FileManager.default.fileExists(atPath: out) ? try? CalibrationFile.load(path: out) : nil
            // Decoding a large file leaves freed heap resident: give it back before the plan
            // measures the baseline.
            Calibrate.releaseFreedHeap()
            var options = runtime.resolved
            options.prefetch = PredictorKind.none
            options.context = options.context ?? window.planned
            var memory = options.memoryOptions
            if memory.budget != nil {
                let c = try ModelSource(path: path, randomAccess: true).configuration
                let shape = CalibrationMemory.Shape(moeLayers: c.moeLayers.count, experts: c.expertCount, hiddenSize: c.hiddenSize,
                                                    ffnSize: c.expertFFNSize, expertsPerToken: c.expertsPerToken)
                let context = min(window.planned, tokens.count)
                memory.reserved = CalibrationMemory.reserved(shape, context: context, types: noSensitivity ? 0 : typeList.count,
                                                             workers: ProcessInfo.processInfo.activeProcessorCount, policy: memory.cachePolicy,
                                                             statisticsLoaded: previous?.activations?.isComplete == true)
                if !noSensitivity, sensitivity == .measured {
                    let windows = max(1, QualityProbe.windowCount(tokens: tokens.count, context: context, count: sensitivityWindows))
                    memory.reserved += CalibrationMemory.measuredProbe(c, options: options.executorOptions, context: context, windows: windows,
                                                                       moeLayers: c.moeLayers.count)
                }
            }
            let model = try Model(path: path, options: options.executorOptions, memory: memory)
            let ctxSize = try window.resolve(for: model)
            let interactive = isatty(STDERR_FILENO) != 0
            func status(_ line: String, final: Bool = false) {
                FileHandle.standardError.write(Data((interactive ? "\r\u{1B}[K" + line + (final ? "\n" : "") : line + "\n").utf8))
            }
            let fingerprint = try model.source.expertFingerprint()
            let activationSettings = ActivationStatistics.Settings(
                model: model.source.path, modelFingerprint: fingerprint, text: text,
                tokensHash: SensitivityTable.Settings.tokensHash(of: [tokens]), totalTokens: tokens.count, context: ctxSize)
            var resumeActivations: (TransitionTable, ActivationStatistics)? = nil
            if let previous, let a = previous.activations {
                guard a.settings == activationSettings else {
                    throw ValidationError("\(out) holds statistics gathered with other settings (model, text or --ctx-size); pass --restart to discard them, or -o another file")
                }
                resumeActivations = (previous.routing, a)
                if !a.isComplete { status("resuming \(out): \(a.tokens) of \(a.settings.totalTokens) tokens already routed", final: true) }
            }
            let passStart = Date()
            let (table, activations) = try model.gatherActivations(
                tokens: tokens, settings: activationSettings, resume: resumeActivations, saveInterval: CalibrationDefaults.activationSaveInterval,
                save: { routing, stats in try CalibrationFile(routing: routing, activations: stats).write(to: out) }
            ) { p in
                status("[\(p.tokensDone)/\(p.totalTokens)] tokens routed", final: p.tokensDone == p.totalTokens)
            }
            let passSeconds = Date().timeIntervalSince(passStart)
            var file = CalibrationFile(routing: table, activations: activations)
            if !noSensitivity {
                let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
                let windows = QualityProbe.windows(of: tokens, context: ctxSize, count: sensitivityWindows, bos: bos)
                guard !windows.isEmpty else { throw ValidationError("--text has \(tokens.count) tokens, fewer than one --ctx-size window of \(ctxSize)") }
                let settings = SensitivityTable.Settings(
                    model: model.source.path, modelFingerprint: fingerprint, text: text,
                    tokensHash: SensitivityTable.Settings.tokensHash(of: windows), context: ctxSize, windows: windows.count, types: typeList)
                var resume: SensitivityTable? = nil
                if let s = previous?.sensitivity, s.isProxy == (sensitivity == .proxy) {
                    guard s.settings == settings else {
                        throw ValidationError("\(out) holds measurements taken with other settings (model, text, --ctx-size, --sensitivity-windows or --types); pass --restart to discard them, or -o another file")
                    }
                    resume = s
                    status("resuming \(out): \(s.measurements.count) measurements already taken", final: true)
                }
                let start = Date()
                let save = { (partial: SensitivityTable) throws in try CalibrationFile(routing: table, sensitivity: partial, activations: activations).write(to: out) }
                let report = { (p: Model.SensitivityProgress) in
                    let elapsed = Date().timeIntervalSince(start)
                    let eta = elapsed / Double(p.measuredNow) * Double(p.total - p.done)
                    if let m = p.last {
                        let what = sensitivity == .proxy ? String(format: "loss %.3e", m.kld) : String(format: "KLD %.5f, ΔNLL %+.5f", m.kld, m.deltaNLL)
                        status(String(format: "[%d/%d] layer %d expert %d %@: %@  ETA %@", p.done, p.total, m.layer, m.expert, m.type,
                                      what, Units.formatDuration(eta)), final: p.done == p.total)
                    }
                }
                switch sensitivity {
                case .proxy:
                    file.sensitivity = try model.proxySensitivity(statistics: activations, settings: settings, resume: resume, save: save, progress: report)
                case .measured:
                    file.sensitivity = try model.measureSensitivity(windows: windows, settings: settings, resume: resume, save: save, progress: report)
                }
                FileHandle.standardError.write(Data(String(format: "routing pass %.1f s, %@ sensitivities %.1f s\n", passSeconds,
                                                                  sensitivity.rawValue, Date().timeIntervalSince(start)).utf8))
            }
            try file.write(to: out)
            let peak = ProcessStats.peakResidentBytes
            FileHandle.standardError.write(Data("peak RSS \(Units.formatBytes(peak)) (\(peak) bytes)\(model.memoryPlan.map { ", budget \(Units.formatBytes($0.budget))" } ?? "")\n".utf8))
            if json {
                print(try prettyJSON(CalibrationSummary(file: file, path: out)))
                return
            }
            print("wrote \(out): \(table.tokens) tokens, \(table.layers.count) MoE layers × \(table.expertCount) experts")
            for (i, layer) in table.layers.enumerated() {
                let freq = table.frequency[i]
                let total = Double(max(freq.reduce(0, +), 1))
                let top = freq.enumerated().sorted { $0.element > $1.element }.prefix(4).map { String(format: "e%d %.1f%%", $0.offset, 100 * Double($0.element) / total) }
                print("layer \(layer): " + top.joined(separator: ", "))
            }
            if let s = file.sensitivity {
                if s.isProxy {
                    print("proxy sensitivity from \(s.scoredTokens) tokens, mean predicted output error per token (activation units²):")
                } else {
                    print(String(format: "sensitivity on %d tokens (perplexity %.3f as given), mean KL divergence per expert lowered alone:", s.scoredTokens, exp(s.baseNLL)))
                }
                for row in CalibrationSummary(file: file, path: out).types {
                    print(String(format: "  %-5@ mean %.2e  max %.2e (layer %d expert %d)  min %.2e", row.type, row.meanKLD, row.maxKLD, row.maxLayer, row.maxExpert, row.minKLD))
                }
            }
        }
    }
}

/// `moe calibrate --json`: the routing summary and the sensitivity per type.
struct CalibrationSummary: Encodable {
    struct TypeRow: Encodable {
        var type: String
        var meanKLD: Double
        var maxKLD: Double
        var maxLayer: Int
        var maxExpert: Int
        var minKLD: Double
        var meanDeltaNLL: Double
    }
    var path: String
    var tokens: Int
    var layers: [Int]
    var frequency: [[Int]]
    var baselinePerplexity: Double?
    var types: [TypeRow]

    init(file: CalibrationFile, path: String) {
        self.path = path
        tokens = file.routing.tokens
        layers = file.routing.layers
        frequency = file.routing.frequency
        baselinePerplexity = file.sensitivity.map { exp($0.baseNLL) }
        types = (file.sensitivity?.settings.types ?? []).compactMap { t in
            let rows = file.sensitivity?.measurements.filter { $0.type == t } ?? []
            guard let worst = rows.max(by: { $0.kld < $1.kld }) else { return nil }
            return TypeRow(type: t, meanKLD: rows.map(\.kld).reduce(0, +) / Double(rows.count), maxKLD: worst.kld, maxLayer: worst.layer,
                           maxExpert: worst.expert, minKLD: rows.map(\.kld).min() ?? 0,
                           meanDeltaNLL: rows.map(\.deltaNLL).reduce(0, +) / Double(rows.count))
        }
    }
}
