import ArgumentParser
import Foundation
import SwiftMoE

struct Tune: ParsableCommand, CheckedArguments {
    static let configuration = CommandConfiguration(
        abstract: "Find the expert cache size, policy and prefetch setting that run a workload fastest within a RAM budget.",
        discussion: """
            Replays the workload's expert requests through every policy × predictor × pool size from one layer's active \
            experts to all resident, with Belady's MIN as the bound; projects tokens/s from the measured compute and load \
            costs; recommends the smallest pool within --tolerance of the fastest that --memory allows; checks it with a real \
            run (projected vs measured); writes an SVG curve and a config file (moe run --config FILE). With --text the \
            workload is traced here (decode, once per predictor); with --trace it comes from moe trace. docs/tuning.md. \
            --cache-policy, --prefetch and --expert-cache are what tune varies: use --policies and --prefetch-kinds.
            """)

    @OptionGroup var model: ModelArgument
    @Option(help: "A UTF-8 text like the expected workload (traced here).") var text: String?
    @Option(help: "A trace from moe trace to replay instead of --text.") var trace: String?
    @Option(help: "Tokens of --text to trace. More gives a steadier projection and a longer trace.") var tokens: Int = 1024
    @OptionGroup var window: ContextWindowOption
    @Option(help: "Cache policies to replay, comma-separated.") var policies: String = CachePolicyKind.allCases.map(\.rawValue).joined(separator: ",")
    @Option(name: .customLong("prefetch-kinds"), help: "Predictors to measure and replay, comma-separated (default: none,lookahead, plus path,hybrid when calibration exists). Each costs one more traced run of --text.")
    var prefetchKinds: String?
    @Option(help: "Recommend the smallest pool whose projected speed is within this fraction of the fastest (0.05 = 5%). Higher saves RAM, lower chases the last tokens/s.")
    var tolerance: Double = 0.05
    @Option(name: .customLong("verify-tokens"), help: "Tokens of the real run that checks the recommendation (0: skip). More is a steadier check, and slower.")
    var verifyTokens: Int = 256
    @Option(name: .customLong("max-sizes"), help: "Most pool sizes to replay (evenly spaced when the model has more experts). More is a finer curve and a longer sweep.")
    var maxSizes: Int = 64
    @Option(help: "Where to write the SVG curve (hit rate and tokens/s vs cache size).") var svg: String = "tune.svg"
    @Option(name: .customLong("config-out"), help: "Where to write the recommended configuration (moe run --config FILE).") var configOut: String = "tune-config.json"
    @Flag(help: "Print the whole result as JSON instead of the table.") var json = false
    @OptionGroup var runtime: RuntimeOptions

    func check() throws {
        guard (text == nil) != (trace == nil) else { throw ValidationError("give exactly one of --text and --trace") }
        guard tokens >= 1 else { throw ValidationError("--tokens must be at least 1") }
        guard tolerance >= 0, tolerance < 1 else { throw ValidationError("--tolerance must be in [0, 1)") }
        guard verifyTokens >= 0 else { throw ValidationError("--verify-tokens must not be negative") }
        guard maxSizes >= 2 else { throw ValidationError("--max-sizes must be at least 2") }
        if runtime.cachePolicy != nil || runtime.prefetch != nil || runtime.expertCache != nil {
            throw ValidationError("tune varies --cache-policy, --prefetch and --expert-cache itself; choose what to replay with --policies and --prefetch-kinds")
        }
    }

    func run() throws {
        try reportingErrors {
            let run = runtime.resolved
            var options = TuneOptions(budget: run.memoryBytes, executor: run.executorOptions, memory: run.memoryOptions)
            options.policies = try policies.split(separator: ",").map { name in
                guard let p = CachePolicyKind(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("unknown policy \(name) in --policies (known: \(CachePolicyKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return p
            }
            if let prefetchKinds {
                options.prefetchKinds = try prefetchKinds.split(separator: ",").map { name in
                    guard let k = PredictorKind(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("unknown predictor \(name) in --prefetch-kinds (known: \(PredictorKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    return k
                }
            } else {
                options.prefetchKinds = [.none, .lookahead] + (Model.hasCalibration(path: model.model, explicit: run.calibration) ? [.path, .hybrid] : [])
            }
            options.tokens = tokens
            options.tolerance = tolerance
            options.verifyTokens = verifyTokens
            options.maxSizes = maxSizes
            options.memory.maxContext = options.memory.maxContext ?? window.planned
            let configuration = try ModelSource(path: model.model).configuration
            options.window = try window.resolve([(model.model, options.memory.context(for: configuration), configuration.contextLength)])

            var ids: [Int]? = nil
            var recorded: Trace? = nil
            let source: String
            if let text {
                ids = Array(try Tokenizer(path: model.model).encode(try readText(text)).prefix(tokens))
                source = text
            } else {
                let path = trace ?? ""
                recorded = try TraceCodec.read(path: path)
                source = path
            }
            let result = try Model.tune(path: model.model, text: ids, trace: recorded, source: source, options: options) { line in
                FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))

            let chart = TuneChart.svg(points: result.points, recommendation: result.recommendation, expertBytes: result.expertBytes,
                                      title: (model.model as NSString).lastPathComponent)
            try write(chart, to: svg)
            try result.configuration.write(to: configOut)
            if json {
                print(try prettyJSON(result))
                return
            }
            printTable(result)
            print("wrote \(svg) and \(configOut)")
        }
    }

    func printTable(_ r: TuneResult) {
        let c = r.cost
        print("workload   \(r.tokens) tokens, \(r.requests) expert requests; \(r.totalExperts) experts of \(Units.formatBytes(r.expertBytes))")
        print(String(format: "costs      compute %.3f ms/token, load %.3f ms/expert%@", 1000 * c.computeSeconds / Double(max(c.tokens, 1)), 1000 * c.loadSeconds,
                     c.prefetchLoadSeconds.isEmpty ? "" : ", prefetch " + c.prefetchLoadSeconds.sorted { $0.key < $1.key }.map { String(format: "%@ %.3f ms/load", $0.key, 1000 * $0.value) }.joined(separator: ", ")))
        if let b = r.budgetExperts["none"], let plan = r.memoryPlan {
            print("budget     \(Units.formatBytes(plan.budget)): pool up to \(b) experts (\(Units.formatBytes(b * r.expertBytes))); \(plan.breakdown)")
        } else {
            print("budget     none (every size up to all-resident allowed)")
        }
        print(String(format: "sweep      %d configurations in %.2f s", r.points.count, r.sweepSeconds))
        // One row per size: hit rate and tokens/s of each policy (no prefetch) and the bound, best prefetch.
        let sizes = Array(Set(r.points.map(\.experts))).sorted()
        let policies = Array(Set(r.points.filter { $0.prefetch == "none" && $0.policy != "belady" }.map(\.policy))).sorted()
        let kinds = Array(Set(r.points.map(\.prefetch))).filter { $0 != "none" }.sorted()
        var header = String(format: "%8@ %11@", "experts", "cache")
        for p in policies { header += String(format: " %15@", p) }
        for k in kinds { header += String(format: " %17@", "best+\(k)") }
        header += String(format: " %8@", "belady")
        print("\n" + header + "    (hit rate / projected tokens/s)")
        let shown = sizes.count <= 24 ? sizes : stride(from: 0, to: sizes.count, by: Int((Double(sizes.count) / 24).rounded(.up))).map { sizes[$0] } + [sizes.last!]
        let marked = [r.recommendation.point.experts] + (r.budgetExperts["none"].map { [$0] } ?? [])
        for size in Array(Set(shown + marked)).sorted() {
            let at = r.points.filter { $0.experts == size }
            var row = String(format: "%8d %11@", size, Units.formatBytes(size * r.expertBytes))
            for p in policies {
                if let x = at.first(where: { $0.policy == p && $0.prefetch == "none" }) { row += String(format: " %5.1f%% %8.1f", 100 * x.hitRate, x.tokensPerSecond) }
            }
            for k in kinds {
                if let x = at.filter({ $0.prefetch == k }).max(by: { $0.tokensPerSecond < $1.tokensPerSecond }) {
                    row += String(format: " %5.1f%% %10.1f", 100 * x.hitRate, x.tokensPerSecond)
                }
            }
            if let b = at.first(where: { $0.policy == "belady" }) { row += String(format: " %7.1f%%", 100 * b.hitRate) }
            if at.first?.withinBudget == false { row += "  over budget" }
            if size == r.recommendation.point.experts { row += "  <- recommended" }
            print(row)
        }
        let p = r.recommendation.point
        print(String(format: "\nrecommended %d experts (%@), %@%@: hit rate %.1f%%, projected %.1f tokens/s (fastest within budget: %d experts, %@, %.1f tokens/s)",
                     p.experts, Units.formatBytes(p.poolBytes), p.policy, p.prefetch == "none" ? "" : " + prefetch \(p.prefetch)", 100 * p.hitRate, p.tokensPerSecond,
                     r.recommendation.fastest.experts, r.recommendation.fastest.policy, r.recommendation.fastest.tokensPerSecond))
        if let v = r.verification {
            print(String(format: "verified   %d tokens: projected %.1f tokens/s, measured %.1f (%.0f%%); hit rate projected %.1f%%, measured %.1f%%; %d requests disagree",
                         v.tokens, v.projectedTokensPerSecond, v.measuredTokensPerSecond, 100 * v.measuredTokensPerSecond / max(v.projectedTokensPerSecond, 1e-9),
                         100 * v.projectedHitRate, 100 * v.measuredHitRate, v.disagreements))
            print(String(format: "           compute projected %.3f s, measured %.3f s; waiting for experts projected %.3f s, measured %.3f s",
                         v.projectedComputeSeconds, v.measuredComputeSeconds, v.projectedWaitSeconds, v.measuredWaitSeconds))
        }
        print("\n" + r.commandLine)
    }
}
