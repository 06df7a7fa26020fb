import ArgumentParser
import Foundation
import SwiftMoE

@main
struct Moe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Run mixture-of-experts language models in less RAM than the model.",
        subcommands: [Run.self, Chat.self, Inspect.self, Tokenize.self, Logits.self, Generate.self, Bench.self, Convert.self, Perplexity.self, KLD.self, Calibrate.self, TraceCommand.self, Tune.self]
    )
}

/// Runs `body`, turning library errors into a one-line message and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct ModelArgument: ParsableArguments {
    @Argument(help: "A GGUF file, a Hugging Face model directory (config.json + *.safetensors), or a .moe store.")
    var model: String
}

struct TokenList: ExpressibleByArgument {
    var ids: [Int]
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        var ids: [Int] = []
        for p in parts {
            guard let id = Int(p.trimmingCharacters(in: .whitespaces)), id >= 0 else { return nil }
            ids.append(id)
        }
        guard !ids.isEmpty else { return nil }
        self.ids = ids
    }
    static var defaultCompletionKind: CompletionKind { .default }
}

extension KernelPath: ExpressibleByArgument {}
extension KVCache.ElementType: ExpressibleByArgument {}
extension CachePolicyKind: ExpressibleByArgument {}
extension PredictorKind: ExpressibleByArgument {}

/// `--expert-cache`: `64MB` or `25%`.
struct ExpertCacheArgument: ExpressibleByArgument {
    var size: Model.ExpertCacheSize
    init(size: Model.ExpertCacheSize) { self.size = size }
    init?(argument: String) {
        guard let s = Model.ExpertCacheSize(argument) else { return nil }
        size = s
    }
}

/// A byte size on the command line: `2GB`, `1.5GiB`, `800M`, `4096`.
struct ByteSize: ExpressibleByArgument {
    var bytes: Int
    init(bytes: Int) { self.bytes = bytes }
    init?(argument: String) {
        guard let b = Units.parseBytes(argument), b > 0 else { return nil }
        bytes = b
    }
}

/// Options every command that runs the model shares. `--config FILE` supplies any of them
/// from a file (`moe tune` writes one); a flag on the command line wins over the file.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Read these options from a JSON file (moe tune writes one, docs/tuning.md); flags given here override it.")
    var config: String?

    @Option(name: .customLong("threads"), help: ArgumentHelp("Worker threads (default: the cores available). More threads help until memory bandwidth is the limit.", valueName: "threads"))
    var threadsFlag: Int?

    @Option(name: .customLong("kernels"), help: ArgumentHelp("fast: 8-bit activations for quantized weights, as llama.cpp (default). reference: dequantize and compute in f32 — slow, matches transformers to 1e-4.", valueName: "kernels"))
    var kernelsFlag: KernelPath?

    @Option(name: .customLong("kv-cache"), help: ArgumentHelp("KV cache element type: f16 (half the memory, default) or f32 (exact).", valueName: "kv-cache"))
    var kvCacheFlag: KVCache.ElementType?

    @Option(help: "Keep the whole process under this much RAM (e.g. 2GB, 1.5GiB, 800M): experts are paged from disk into a pool of what is left. Smaller is slower (more reads). Default: no limit, experts stay mapped.")
    var memory: ByteSize?

    @Option(name: .customLong("expert-cache"), help: "Cap the expert pool itself: bytes (64MB), a share of the model's expert bytes (25%), or min (one layer's active experts: load on demand). Works with or without --memory; smaller means more reads.")
    var expertCache: ExpertCacheArgument?

    @Option(name: .customLong("cache-policy"), help: ArgumentHelp("Which expert to evict when the pool is full under --memory: lru (default), lfu, fifo, or edgemoe (frequency over forward layer distance). moe tune measures which pays on a workload.", valueName: "cache-policy"))
    var cachePolicyFlag: CachePolicyKind?

    @Option(help: "Longest context (prompt + generated tokens) to plan the KV cache for. Larger costs KV memory under --memory. Default: the model's, at most 4096.")
    var context: Int?

    @Option(name: .customLong("prefetch"), help: ArgumentHelp("When paging, load the experts of the next layers while this one computes: none (default: measured fastest on this kind of machine, docs/performance.md), lookahead (next layer's gate on this hidden state), path (EdgeMoE statistics from moe calibrate), hybrid (both). Pays when a layer's compute outlasts its reads; wrong guesses cost reads and pool space.", valueName: "prefetch"))
    var prefetchFlag: PredictorKind?

    @Option(name: .customLong("prefetch-depth"), help: ArgumentHelp("MoE layers ahead to prefetch (default 1). Deeper hides more latency but guesses worse.", valueName: "prefetch-depth"))
    var prefetchDepthFlag: Int?

    @Option(name: .customLong("prefetch-width"), help: "Experts prefetched per layer ahead (default: top-k + 1). Wider raises recall and wasted reads.")
    var prefetchWidth: Int?

    @Option(help: "Path statistics written by moe calibrate (default: MODEL.calibration.json when it exists).")
    var calibration: String?

    @Option(name: .customLong("loader-threads"), help: ArgumentHelp("Threads that read prefetched experts (default 1; each adds a staging buffer to the budget).", valueName: "loader-threads"))
    var loaderThreadsFlag: Int?

    var threads: Int {
        get { threadsFlag ?? ThreadPool.defaultThreadCount }
        set { threadsFlag = newValue }
    }
    var kernels: KernelPath {
        get { kernelsFlag ?? .fast }
        set { kernelsFlag = newValue }
    }
    var kvCache: KVCache.ElementType {
        get { kvCacheFlag ?? .f16 }
        set { kvCacheFlag = newValue }
    }
    var cachePolicy: CachePolicyKind {
        get { cachePolicyFlag ?? .lru }
        set { cachePolicyFlag = newValue }
    }
    var prefetch: PredictorKind {
        get { prefetchFlag ?? .none }
        set { prefetchFlag = newValue }
    }
    var prefetchDepth: Int {
        get { prefetchDepthFlag ?? 1 }
        set { prefetchDepthFlag = newValue }
    }
    var loaderThreads: Int {
        get { loaderThreadsFlag ?? 1 }
        set { loaderThreadsFlag = newValue }
    }

    mutating func validate() throws {
        if let config {
            let file: RunConfiguration
            do { file = try RunConfiguration.load(path: config) } catch { throw ValidationError("\(error)") }
            // The file fills in what the command line left unset.
            threadsFlag = threadsFlag ?? file.threads
            kernelsFlag = kernelsFlag ?? file.kernels
            kvCacheFlag = kvCacheFlag ?? file.kvCache
            if memory == nil, let b = file.memoryBytes { memory = ByteSize(bytes: b) }
            if expertCache == nil, let e = file.expertCacheSize { expertCache = ExpertCacheArgument(size: e) }
            cachePolicyFlag = cachePolicyFlag ?? file.cachePolicy
            context = context ?? file.context
            prefetchFlag = prefetchFlag ?? file.prefetch
            prefetchDepthFlag = prefetchDepthFlag ?? file.prefetchDepth
            prefetchWidth = prefetchWidth ?? file.prefetchWidth
            calibration = calibration ?? file.calibration
            loaderThreadsFlag = loaderThreadsFlag ?? file.loaderThreads
        }
        guard threads >= 1, threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
        if let context, context < 1 { throw ValidationError("--context must be at least 1") }
        guard prefetchDepth >= 1, prefetchDepth <= 64 else { throw ValidationError("--prefetch-depth must be between 1 and 64") }
        if let prefetchWidth, prefetchWidth < 1 { throw ValidationError("--prefetch-width must be at least 1") }
        guard loaderThreads >= 1, loaderThreads <= 16 else { throw ValidationError("--loader-threads must be between 1 and 16") }
    }

    var executorOptions: ExecutorOptions { ExecutorOptions(threads: threads, kernels: kernels, kvCacheType: kvCache) }
    var memoryOptions: Model.MemoryOptions {
        Model.MemoryOptions(budget: memory?.bytes, cachePolicy: cachePolicy, maxContext: context, prefetch: prefetch,
                            prefetchDepth: prefetchDepth, prefetchWidth: prefetchWidth, calibration: calibration, loaderThreads: loaderThreads,
                            expertCache: expertCache?.size)
    }

    func open(_ path: String) throws -> Model {
        let model = try Model(path: path, options: executorOptions, memory: memoryOptions)
        model.pagedExperts?.recordsAccesses = true
        return model
    }
}

/// One line about paging, for the end of a run.
func pagingSummary(_ model: Model) -> String? {
    guard let store = model.pagedExperts else { return nil }
    let m = store.metrics
    var line = String(format: "experts: %d hits, %d misses (%.1f%% hit rate), %@ read in %.3f s, verify %.3f s, decode %.3f s, stalled %.3f s; pool %@",
                      m.hits, m.misses, 100 * m.hitRate, Units.formatBytes(m.bytesRead), m.readSeconds, m.verifySeconds, m.decodeSeconds, m.stallSeconds, Units.formatBytes(m.poolCapacity))
    if let plan = model.memoryPlan { line += ", budget \(Units.formatBytes(plan.budget))" }
    line += m.directIO ? ", direct I/O" : ", buffered I/O + fadvise"
    let report = model.pagingReport()
    if let belady = report.beladyHitRate {
        line += String(format: "; Belady MIN at this capacity %.1f%%", 100 * belady)
    }
    if let predictor = model.transformer.predictor, predictor.kind != .none {
        let p = model.transformer.predictionStats
        line += String(format: "; prefetch %@: %d issued, %d used, %d wasted, %d late, precision %.1f%%, recall %.1f%%",
                       predictor.kind.rawValue, m.prefetchIssued, m.prefetchUseful, m.prefetchWasted, m.prefetchLate, 100 * p.precision(), 100 * p.recall())
    }
    return line
}
