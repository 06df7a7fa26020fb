import ArgumentParser
import Foundation
import SwiftMoE

/// `moe trace`: record (default), report, export.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Record which experts fire, how the expert cache serves them and where the time goes; report and export traces.",
        discussion: """
            moe trace MODEL (--prompt P | --text FILE) -o RUN.trace     record (docs/trace-format.md)
            moe trace report RUN.trace -o report.html [--svg-dir DIR]   HTML page with SVG figures
            moe trace export RUN.trace --format jsonl|csv|perfetto -o FILE
            """,
        subcommands: [Record.self, Report.self, Export.self],
        defaultSubcommand: Record.self)
}

extension TraceCommand {
    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a prompt or a text and record every layer's experts, router weights, cache hits and misses, loads and timings.",
            discussion: """
                With --text, the text is evaluated teacher-forced in windows of --ctx-size tokens (each from an empty KV cache):
                one token per step with --mode decode (as generation runs, the default), one window per step with --mode prefill.
                With --prompt, the prompt is one step and --max-tokens greedy tokens follow. Paging options (--memory,
                --expert-cache, --cache-policy, --prefetch) apply as in moe run; without them a .moe store still pages (into a pool
                that holds every expert) and GGUF/HF experts stay mapped (routes and timings only).
                """)

        @OptionGroup var model: ModelArgument
        @Option(help: "Prompt to evaluate and continue (raw completion, no chat template).") var prompt: String?
        @Option(help: "A UTF-8 text file to evaluate teacher-forced.") var text: String?
        @Option(name: .shortAndLong, help: "Where to write the trace (binary, docs/trace-format.md).") var output: String
        @Option(help: "decode: one token per step, as generation runs (default). prefill: one window per step, as prompts run.")
        var mode: ModeArgument = .decode
        @Option(name: .customLong("ctx-size"), help: "Tokens per window with --text (KV cache reset between windows). Longer windows cost more attention time per token.")
        var ctxSize: Int = 512
        @Option(help: "Tokens of --text to evaluate. More gives steadier statistics and a longer run.") var tokens: Int = 1024
        @Option(name: .customLong("max-tokens"), help: "Tokens generated after --prompt (greedy).") var maxTokens: Int = 64
        @OptionGroup var runtime: RuntimeOptions

        enum ModeArgument: String, ExpressibleByArgument, CaseIterable { case decode, prefill }

        func validate() throws {
            guard (prompt == nil) != (text == nil) else { throw ValidationError("give exactly one of --prompt and --text") }
            guard ctxSize >= 1 else { throw ValidationError("--ctx-size must be at least 1") }
            guard tokens >= 1 else { throw ValidationError("--tokens must be at least 1") }
            guard maxTokens >= 0 else { throw ValidationError("--max-tokens must not be negative") }
        }

        func run() throws {
            try reportingErrors {
                var options = runtime
                let ids: [Int]
                let workload: TraceWorkload
                let source: String
                let tokenizer = try Tokenizer(path: model.model)
                if let prompt {
                    guard !prompt.isEmpty else { throw ValidationError("the prompt is empty") }
                    ids = tokenizer.encode(prompt)
                    if options.context == nil { options.context = ids.count + maxTokens }
                    workload = .generate(prompt: ids, maxNewTokens: maxTokens)
                    source = "prompt: \(prompt.prefix(80))"
                } else {
                    let path = text ?? ""
                    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --text \(path)") }
                    ids = Array(tokenizer.encode(String(decoding: data, as: UTF8.self)).prefix(tokens))
                    guard !ids.isEmpty else { throw ValidationError("--text \(path) has no tokens") }
                    if options.context == nil { options.context = ctxSize }
                    workload = .text(tokens: ids, mode: mode == .decode ? .decode : .prefill, window: ctxSize)
                    source = path
                }
                let m = try options.open(model.model)
                let start = Date()
                var lastReport = Date.distantPast
                let trace = try m.recordTrace(workload, source: source) { done, total in
                    if Date().timeIntervalSince(lastReport) > 0.25 || done == total {
                        lastReport = Date()
                        let elapsed = Date().timeIntervalSince(start)
                        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
                        FileHandle.standardError.write(Data(String(format: "\r[%d/%d] tokens, %.1f s, ETA %.0f s ", done, total, elapsed, eta).utf8))
                    }
                }
                FileHandle.standardError.write(Data("\n".utf8))
                try TraceCodec.write(trace, to: output)
                let s = TraceAnalysis(trace).summary
                let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
                print("wrote \(output) (\(Units.formatBytes(size))): \(s.steps) steps, \(s.tokens) tokens, \(s.accesses) expert requests")
                if trace.header.paged {
                    print(String(format: "hit rate %.1f%% (%d hits, %d late, %d misses), %d loads (%d prefetched), %@ read, stall %.3f s of %.3f s",
                                 100 * s.hitRate, s.hits, s.late, s.misses, s.loads, s.prefetchLoads, Units.formatBytes(s.bytesRead), s.stallSeconds, s.wallSeconds))
                } else {
                    print("experts were not paged (add --memory or --expert-cache to trace the cache)")
                }
                print("next: moe trace report \(output) -o report.html    moe tune \(model.model) --trace \(output)")
            }
        }
    }

    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write one self-contained HTML page with SVG figures (expert frequency, layer transitions, co-activation, reuse distance, hit rate over tokens) and their numbers.")

        @Argument(help: "A trace written by moe trace (binary or its JSONL export).") var trace: String
        @Option(name: .shortAndLong, help: "The HTML file to write.") var output: String = "report.html"
        @Option(name: .customLong("svg-dir"), help: "Also write each figure as a standalone SVG file into this directory.") var svgDir: String?
        @Option(help: "Two MoE layers for the transition matrix, FROM,TO (default: the first two).") var pair: String?
        @Option(help: "MoE layer for the co-activation matrix (default: the first).") var layer: Int?

        func run() throws {
            try reportingErrors {
                let t = try TraceCodec.read(path: trace)
                var layers: (Int, Int)? = nil
                if let pair {
                    let parts = pair.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                    guard parts.count == 2 else { throw ValidationError("--pair takes two layers, FROM,TO (e.g. 0,1)") }
                    layers = (parts[0], parts[1])
                }
                let report = try TraceReport(trace: t, pair: layers, layer: layer, title: "Expert trace: \((t.header.model as NSString).lastPathComponent)")
                try write(report.html, to: output)
                print("wrote \(output) (\(report.figures.count) figures)")
                if let svgDir {
                    try FileManager.default.createDirectory(atPath: svgDir, withIntermediateDirectories: true)
                    for f in report.figures {
                        let path = (svgDir as NSString).appendingPathComponent("\(f.name).svg")
                        try write(f.svg, to: path)
                        print("wrote \(path)")
                    }
                }
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert a trace to JSONL (lossless), CSV (one table) or Chrome/Perfetto trace-event JSON (open in ui.perfetto.dev).")

        enum Format: String, ExpressibleByArgument, CaseIterable { case jsonl, csv, perfetto }

        @Argument(help: "A trace written by moe trace.") var trace: String
        @Option(help: "jsonl, csv or perfetto (default: from the output's extension: .jsonl, .csv, .json).") var format: Format?
        @Option(help: "The CSV table: accesses (one row per expert request, default), routes, layers, loads.") var table: String = "accesses"
        @Option(name: .shortAndLong, help: "The file to write.") var output: String

        func run() throws {
            try reportingErrors {
                let ext = (output as NSString).pathExtension.lowercased()
                guard let f = format ?? ["jsonl": Format.jsonl, "csv": .csv, "json": .perfetto][ext] else {
                    throw ValidationError("cannot tell the format from \(output); pass --format jsonl|csv|perfetto")
                }
                let t = try TraceCodec.read(path: trace)
                switch f {
                case .jsonl: try TraceJSONL.encode(t).write(to: URL(fileURLWithPath: output))
                case .perfetto: try TracePerfetto.encode(t).write(to: URL(fileURLWithPath: output))
                case .csv:
                    guard let tab = TraceCSV.Table(rawValue: table) else {
                        throw ValidationError("--table must be one of \(TraceCSV.Table.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    try write(TraceCSV.encode(t, table: tab), to: output)
                }
                print("wrote \(output)")
            }
        }
    }
}

func write(_ text: String, to path: String) throws {
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw ValidationError("cannot write \(path): \(error.localizedDescription)")
    }
}
