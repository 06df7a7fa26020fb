// Paging under a memory limit without the server's packages: the library calls behind
// `moe bench`, `moe kld` and `moe convert --miss-copy`, in a binary that builds in release in a
// fraction of `moe`'s time (for measuring on a busy machine; `moe` gives the same numbers).
//
//   swift build -c release --product waves-bench
//   .build/release/waves-bench bench MODEL [--memory 300MB] [--expert-cache 25%] [--prompt 128] [--gen 32] [--reps 3]
//                                          [--read-ahead 2] [--prompt-chunk 512] [--on-miss lowbit] [--prefetch auto]
//                                          [--context 4096] [--read-depth 4] [--cache-policy auto]
//   .build/release/waves-bench kld MODEL --base BASE --text FILE [--ctx 512] [--chunks N] [same run options]
//   .build/release/waves-bench convert INPUT OUTPUT [--miss-copy q2_K] [--bits q4_K]
//
// Run options are parsed and checked by `RunConfiguration`, as `moe`'s flags are.
import Foundation
import SwiftMoE

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

var args = Array(CommandLine.arguments.dropFirst())
guard args.count >= 2 else { fail("usage: waves-bench bench|kld|convert MODEL ... (see the file's header)") }
let command = args.removeFirst(), model = args.removeFirst()
var named: [String: String] = [:]
var positional: [String] = []
while !args.isEmpty {
    let a = args.removeFirst()
    if a.hasPrefix("--") {
        guard !args.isEmpty else { fail("\(a) needs a value") }
        named[String(a.dropFirst(2))] = args.removeFirst()
    } else {
        positional.append(a)
    }
}
func int(_ key: String, _ fallback: Int, in named: [String: String]) -> Int {
    guard let v = named[key] else { return fallback }
    guard let i = Int(v) else { fail("--\(key) \(v) is not a number") }
    return i
}

var run = RunConfiguration()
run.memory = named["memory"]
run.expertCache = named["expert-cache"]
run.readAhead = named["read-ahead"].flatMap(Int.init)
run.promptChunk = named["prompt-chunk"].flatMap(Int.init)
run.threads = named["threads"].flatMap(Int.init)
run.context = named["context"].flatMap(Int.init)
run.readDepth = named["read-depth"].flatMap(Int.init)
if let v = named["on-miss"] { guard let p = MissPolicy(rawValue: v) else { fail("--on-miss \(v)") }; run.onMiss = p }
if let v = named["prefetch"] { guard let p = PredictorKind(rawValue: v) else { fail("--prefetch \(v)") }; run.prefetch = p }
if let v = named["cache-policy"] { guard let p = CachePolicyKind(rawValue: v) else { fail("--cache-policy \(v)") }; run.cachePolicy = p }
do { try run.validate() } catch { fail(error.flagDescription) }

func json<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self)
}

do {
    switch command {
    case "bench":
        let m = try Model(path: model, options: run.executorOptions, memory: run.memoryOptions)
        m.pagedExperts?.recordsAccesses = true
        let r = try m.benchmark(promptTokens: int("prompt", 128, in: named), genTokens: int("gen", 32, in: named), repetitions: int("reps", 3, in: named))
        print(json(r))
        if let plan = m.memoryPlan { print("plan: \(plan.breakdown)") }
        if let label = m.lossyLabel { print(label) }
        if let status = m.transformer.prefetchAutoStatus { print("prefetch \(status)") }
    case "kld":
        guard let base = named["base"], let text = named["text"], let content = try? String(contentsOfFile: text, encoding: .utf8) else {
            fail("kld needs --base BASE and --text FILE")
        }
        let ours = try Model(path: model, options: run.executorOptions, memory: run.memoryOptions)
        var baseRun = run
        baseRun.onMiss = nil
        let reference = try Model(path: base, options: baseRun.executorOptions, memory: baseRun.memoryOptions)
        let tokenizer = try Tokenizer(path: model)
        let tokens = tokenizer.encode(content)
        let bos = tokens.first == tokenizer.bosTokenId ? tokenizer.bosTokenId : nil
        let r = try ours.klDivergence(from: reference, tokens: tokens, context: int("ctx", 512, in: named), bos: bos, maxWindows: named["chunks"].flatMap(Int.init))
        print(json(r))
        print(String(format: "mean KLD %.6f ± %.6f, top-1 %.2f%%, PPL %.4f (base %.4f), ratio %+.3f%%", r.meanKLD, r.standardError,
                     100 * r.top1Agreement, r.perplexity, r.basePerplexity, 100 * (exp(r.meanDeltaNLL) - 1)))
        if let label = ours.lossyLabel { print(label) }
    case "convert":
        guard let output = positional.first else { fail("convert needs INPUT OUTPUT") }
        let missCopy = named["miss-copy"].flatMap { BitPlan.storableType($0) ?? nil }
        let report = try Converter.convert(input: model, output: output,
                                           options: .init(plan: BitPlan(default: named["bits"] ?? "keep"), missCopy: missCopy))
        print(json(report))
    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("\(error)")
}
