import ArgumentParser
import Foundation
import SwiftMoE

extension TraceCommand {
    struct Record: ParsableCommand, CheckedArguments {
        static let configuration = CommandConfiguration(
            abstract: "Run a prompt or a text and record every layer's experts, router weights, cache hits and misses, loads and timings.",
            discussion: """
                With --text, the text is evaluated teacher-forced in windows of --ctx-size tokens (each from an empty KV cache): \
                one token per step with --mode decode (as generation runs, the default), one window per step with --mode prefill. \
                With --prompt, the prompt is one step and --max-tokens greedy tokens follow. Paging options (--memory, \
                --expert-cache, --cache-policy, --prefetch) apply as in moe run; without them a .moe store still pages (into a pool \
                that holds every expert) and GGUF/HF experts stay mapped (routes and timings only).
                """)

        @OptionGroup var model: ModelArgument
        @Option(help: "Prompt to evaluate and continue (raw completion, no chat template).") var prompt: String?
        @Option(help: "A UTF-8 text file to evaluate teacher-forced.") var text: String?
        @Option(name: .shortAndLong, help: "Where to write the trace (binary, docs/trace-format.md).") var output: String
        @Option(help: "decode: one token per step, as generation runs (default). prefill: one window per step, as prompts run.")
        var mode: ModeArgument = .decode
        @OptionGroup var window: ContextWindowOption
        @Option(help: "Tokens of --text to evaluate. More gives steadier statistics and a longer run.") var tokens: Int = 1024
        @Option(name: .customLong("max-tokens"), help: "Tokens generated after --prompt, greedy (default: \(Self.preferredNew), fewer if the model's context ends sooner). More gives more decode steps to study.")
        var maxTokens: Int?
        @OptionGroup var runtime: RuntimeOptions

        static let preferredNew = 64

        enum ModeArgument: String, ExpressibleByArgument, CaseIterable { case decode, prefill }

        func check() throws {
            guard (prompt == nil) != (text == nil) else { throw ValidationError("give exactly one of --prompt and --text") }
            guard tokens >= 1 else { throw ValidationError("--tokens must be at least 1") }
            if let maxTokens, maxTokens < 0 { throw ValidationError("--max-tokens must not be negative") }
        }

        func run() throws {
            try reportingErrors {
                let tokenizer = try Tokenizer(path: model.model)
                let m: Model
                let workload: TraceWorkload
                let source: String
                if let prompt {
                    guard !prompt.isEmpty else { throw ValidationError("the prompt is empty") }
                    let ids = tokenizer.encode(prompt)
                    var options = runtime.resolved
                    options.context = options.context ?? ids.count + (maxTokens ?? Self.preferredNew)
                    m = try options.open(model.model)
                    // Without --max-tokens, generate what the context leaves room for.
                    let count = maxTokens ?? max(0, min(Self.preferredNew, m.maxContext - ids.count))
                    workload = .generate(prompt: ids, maxNewTokens: count)
                    source = "prompt: \(prompt.prefix(80))"
                } else {
                    let path = text ?? ""
                    let ids = Array(tokenizer.encode(try readText(path)).prefix(tokens))
                    guard !ids.isEmpty else { throw ValidationError("--text \(path) has no tokens") }
                    m = try window.open(model.model, with: runtime.resolved)
                    workload = .text(tokens: ids, mode: mode == .decode ? .decode : .prefill, window: try window.resolve(for: m))
                    source = path
                }
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
}
