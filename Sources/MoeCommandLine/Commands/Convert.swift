import ArgumentParser
import Foundation
import SwiftMoE

struct Convert: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Write a .moe expert store: every expert its own aligned, checksummed record at its own type.",
        discussion: """
            INPUT is a GGUF file or a Hugging Face directory. Dense weights are copied as they are; \
            experts are stored at --bits, per expert from --bit-plan, or at types the planner picks \
            (--target-size or --max-ppl-increase, from the sensitivities moe calibrate measured on \
            INPUT), LZ4-compressed only where that makes loading faster (see --compression). The \
            output appears only when complete (written to OUT.partial first). A planned conversion \
            also writes its plan (OUT minus .moe plus .plan.json), which you can edit and pass back \
            with --bit-plan. See docs/quality.md.
            """)

    @Argument(help: "A GGUF file or Hugging Face model directory.") var input: String
    @Option(name: .shortAndLong, help: "The .moe file to write.") var output: String
    @Option(help: "Type of every expert: keep (as in the source, default), or \(BitPlan.writableTypeNames). Lower bits: smaller store and faster paging, lower quality.")
    var bits: String?
    @Option(name: .customLong("bit-plan"), help: "A JSON bit plan giving each expert its own type (see docs/store-format.md).")
    var bitPlan: String?
    @Option(help: "auto (default): LZ4 only where reading the smaller record and decoding it beats reading it raw at the disk's speed; size: LZ4 wherever it saves 10% of the bytes; none: all raw.")
    var compression: StoreWriter.CompressionMode = .auto
    @Option(name: .customLong("disk-bandwidth"), help: "Direct-read speed (e.g. 1.5GB, per second) of the storage the store will be read from, for --compression auto. Default: measured on the input's file system. Give it when the store is for another device (phones: 0.1-0.5GB).")
    var diskBandwidth: ByteSize?
    @Option(help: "Calibration from moe calibrate INPUT: its path statistics are embedded (for --prefetch path/hybrid) and its sensitivities drive --target-size / --max-ppl-increase (default: INPUT.calibration.json when it exists).")
    var calibration: String?
    @Option(help: "A calibration (moe calibrate) whose activation statistics make the quantization activation-aware, as llama-quantize --imatrix (default: --calibration, else INPUT.calibration.json when it exists).")
    var imatrix: String?
    @Flag(name: .customLong("no-imatrix"), help: "Quantize with llama.cpp's reference encoding, ignoring any calibration's activation statistics (larger error at 2-6 bits).")
    var noImatrix = false
    @Option(name: .customLong("target-size"), help: "Plan a type per expert so the whole store is at most this big (e.g. 1.2GB). Smaller: less disk and faster paging, lower quality.")
    var targetSize: ByteSize?
    @Option(name: .customLong("max-ppl-increase"), help: "Plan the smallest store whose perplexity on the calibration text is at most this much above INPUT's (2% or 0.02). Runs the planned model a dozen times on the calibration text.")
    var maxPPLIncrease: Fraction?
    @Option(help: "knapsack (default: every type per expert, most loss saved per byte first; measured better in docs/quality.md) or edgemoe (EdgeMoE: two widths, least sensitive experts lowered first).")
    var planner: BitPlanner.Method = .knapsack
    @Option(name: .customLong("plan-out"), help: "Where to write the plan (default: OUT with .plan.json instead of .moe).")
    var planOut: String?
    @Flag(name: .customLong("plan-only"), help: "Write the plan and print what it would give, without writing the store.")
    var planOnly = false
    @Option(help: "Calibration text for --max-ppl-increase (default: the text the calibration was measured on).") var text: String?
    @Option(help: "Worker threads for --max-ppl-increase's evaluations (default: the cores available). More threads help until memory bandwidth is the limit.")
    var threads: Int?
    @Option(name: .customLong("miss-copy"), help: "Also store a small copy of every expert at this type (q2_K, or another of \(BitPlan.writableTypeNames)) for --on-miss lowbit: a decode miss computes from it, read in a fraction of the time, while the exact expert loads (lossy; docs/quality.md). Adds its bytes to the store (version 2, which older SwiftMoE refuses).")
    var missCopy: String?
    @Flag(help: "Print the report as JSON.") var json = false

    /// --threads as a run option: checked, and defaulted, as every command's.
    var runOptions: RunConfiguration {
        var c = RunConfiguration()
        c.threads = threads
        return c
    }

    var planning: Bool { targetSize != nil || maxPPLIncrease != nil }

    func check() throws {
        let sources = [bits != nil, bitPlan != nil, targetSize != nil, maxPPLIncrease != nil].filter { $0 }.count
        guard sources <= 1 else { throw ValidationError("give one of --bits, --bit-plan, --target-size and --max-ppl-increase") }
        if planOnly, !planning { throw ValidationError("--plan-only needs --target-size or --max-ppl-increase") }
        do { try runOptions.validate() } catch { throw ValidationError(error.flagDescription) }
        if noImatrix, imatrix != nil { throw ValidationError("give --imatrix or --no-imatrix, not both") }
        if let missCopy, (BitPlan.storableType(missCopy) ?? nil) == nil {
            throw ValidationError("--miss-copy \(missCopy) is not a type the store can write (\(BitPlan.writableTypeNames), not keep)")
        }
        if let bits, BitPlan.storableType(bits) == nil {
            throw ValidationError("--bits \(bits) is not a type the store can write (\(BitPlan.writableTypeNames))")
        }
    }

    func run() throws {
        try reportingErrors {
            // Ctrl-C or SIGTERM: no temporary file left behind; the output is whole or as it was.
            PartialFiles.removeOnInterrupt()
            let interactive = isatty(STDERR_FILENO) != 0
            let calibrationPath = calibration ?? (planning ? Model.calibrationPath(for: input) : nil)
            var table = try calibration.map { try TransitionTable.load(path: $0) }
            var plan = try bitPlan.map { try BitPlan.load(path: $0) } ?? BitPlan(default: bits ?? "keep")
            let importance = try loadImportance()
            if planning, let calibrationPath {
                guard FileManager.default.fileExists(atPath: calibrationPath) else {
                    throw ValidationError("planning needs sensitivities: run moe calibrate \(input) --text FILE first (or pass --calibration FILE)")
                }
                let file = try CalibrationFile.load(path: calibrationPath)
                table = file.routing
                let outcome = try makePlan(calibrationPath: calibrationPath, file: file, importance: importance)
                plan = outcome.plan
                let planPath = planOut ?? (output.hasSuffix(".moe") ? String(output.dropLast(4)) : output) + ".plan.json"
                try plan.write(to: planPath)
                let counts = outcome.typeCounts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                var line = "plan (\(outcome.method), \(outcome.target)): \(counts) experts; store \(Units.formatBytes(outcome.storeSize)) at most"
                line += String(format: ", predicted KLD %.5f", outcome.predictedKLD)
                if let increase = outcome.measuredPerplexityIncrease, let kld = outcome.measuredKLD {
                    line += String(format: "; measured on the calibration text: perplexity %+.2f%%, KLD %.5f (%d evaluations)", 100 * increase, kld, outcome.evaluations)
                }
                FileHandle.standardError.write(Data((line + "\nwrote plan \(planPath)\n").utf8))
                if planOnly {
                    if json {
                        print(try prettyJSON(outcome))
                    }
                    return
                }
            }
            let start = Date()
            var lastPrint = Date.distantPast
            let report = try Converter.convert(input: input, output: output, options: .init(plan: plan, compression: compression, calibration: table, diskBandwidth: diskBandwidth.map { Double($0.bytes) }, importance: importance, missCopy: missCopy.flatMap { BitPlan.storableType($0) ?? nil })) { p in
                let now = Date()
                guard p.expertsDone == p.expertsTotal || now.timeIntervalSince(lastPrint) > 0.25 else { return }
                lastPrint = now
                let fraction = Double(p.expertsDone) / Double(max(p.expertsTotal, 1))
                let elapsed = now.timeIntervalSince(start)
                let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
                let bar = String(repeating: "#", count: Int(fraction * 30)) + String(repeating: " ", count: 30 - Int(fraction * 30))
                let line = String(format: "[%@] %3.0f%%  %d/%d experts  %@  ETA %.0fs", bar, 100 * fraction, p.expertsDone, p.expertsTotal, Units.formatBytes(p.bytesWritten), eta)
                FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if json {
                print(try prettyJSON(report))
            } else {
                print("wrote \(report.output): \(report.experts) experts, \(report.denseTensors) dense tensors (\(Units.formatBytes(report.denseBytes)))")
                print("experts: \(Units.formatBytes(report.expertBytesDecoded)) decoded, \(Units.formatBytes(report.expertBytesStored)) stored, \(report.compressedRecords) records LZ4-compressed"
                      + (report.diskBandwidth.map { String(format: " (decided against %.2f GB/s direct reads)", $0 / 1e9) } ?? ""))
                print("types: " + report.typeCounts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + " (tensors)")
                if let type = report.missCopyType {
                    print("miss copies: \(type), \(Units.formatBytes(report.missCopyBytes)) (for --on-miss lowbit; store format version 2)")
                }
                if !report.fallbacks.isEmpty {
                    print("note: rows not divisible by the planned block size were stored as: " + report.fallbacks.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
                }
                print(String(format: "took %.1f s", report.seconds))
            }
            if let targetSize, report.fileSize > targetSize.bytes {
                // The planner sizes stores from above; this would be a bug, and the user asked for a bound.
                throw ValidationError("the store is \(report.fileSize) bytes, over --target-size \(targetSize.bytes); please report this")
            }
        }
    }

    /// The per-expert importance of `--imatrix`, `--calibration` or INPUT.calibration.json (the
    /// first given or found), checked against INPUT; nil with --no-imatrix or when none exists.
    func loadImportance() throws -> [ExpertKey: ExpertImportance]? {
        guard !noImatrix else { return nil }
        let found = FileManager.default.fileExists(atPath: Model.calibrationPath(for: input)) ? Model.calibrationPath(for: input) : nil
        guard let path = imatrix ?? calibration ?? found else { return nil }
        let file = try CalibrationFile.load(path: path)
        guard let activations = file.activations else {
            if imatrix != nil { throw ValidationError("\(path) has no activation statistics: rerun moe calibrate (it gathers them in its routing pass)") }
            FileHandle.standardError.write(Data("note: \(path) has no activation statistics (an older calibration); quantizing without importance\n".utf8))
            return nil
        }
        let source = try ModelSource(path: input)
        guard case .store = source.container else {
            guard try source.expertFingerprint() == activations.settings.modelFingerprint else {
                throw ValidationError("\(path) was calibrated on another model (fingerprint differs); calibrate \(input), or pass --no-imatrix")
            }
            FileHandle.standardError.write(Data("activation-aware quantization: importance from \(path) (\(activations.tokens) tokens)\n".utf8))
            return activations.importanceTable()
        }
        return nil
    }

    func makePlan(calibrationPath: String, file: CalibrationFile, importance: [ExpertKey: ExpertImportance]?) throws -> BitPlanning.Outcome {
        let source = try ModelSource(path: input)
        if case .store = source.container {
            throw ValidationError("\(input) is already a .moe store; plan from the original GGUF or Hugging Face model")
        }
        if let targetSize {
            return try BitPlanning.plan(source: source, calibrationPath: calibrationPath, calibration: file, target: .storeSize(targetSize.bytes),
                                        method: planner, embedCalibration: true, probe: nil)
        }
        guard let limit = maxPPLIncrease?.value, let sensitivity = file.sensitivity else {
            throw BitPlanning.PlanningError.noSensitivity(path: calibrationPath)
        }
        let textPath = text ?? sensitivity.settings.text
        guard let data = FileManager.default.contents(atPath: textPath) else {
            throw ValidationError("cannot read the calibration text \(textPath) (pass --text)")
        }
        let model = try Model(path: input, options: runOptions.executorOptions, memory: .init(maxContext: sensitivity.settings.context))
        let tokenizer = try Tokenizer(path: input)
        let tokens = tokenizer.encode(String(decoding: data, as: UTF8.self))
        let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
        let windows = QualityProbe.windows(of: tokens, context: sensitivity.settings.context, count: sensitivity.settings.windows, bos: bos)
        guard SensitivityTable.Settings.tokensHash(of: windows) == sensitivity.settings.tokensHash else {
            throw ValidationError("\(textPath) is not the text \(calibrationPath) was measured on (its tokens differ); pass the same --text")
        }
        let probe = try QualityProbe(model: model, windows: windows)
        return try BitPlanning.plan(source: source, calibrationPath: calibrationPath, calibration: file, target: .perplexityIncrease(limit),
                                    method: planner, embedCalibration: true, probe: probe, importance: importance) { line in
            FileHandle.standardError.write(Data(("  " + line + "\n").utf8))
        }
    }
}
