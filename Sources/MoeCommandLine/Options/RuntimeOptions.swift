import ArgumentParser
import SwiftMoE

/// Options every command that runs a model shares. `--config FILE` supplies any of them from a
/// file (`moe tune` writes one); a flag on the command line wins over the file. Their defaults
/// and valid values are the library's (`RunConfiguration.validate()`, `ExecutorOptions`,
/// `Model.MemoryOptions`), so flags and files are checked by the same code.
struct RuntimeOptions: CheckedArguments {
    private static let memoryDefaults = Model.MemoryOptions()
    private static func limit(_ option: RunConfiguration.Option) -> String {
        guard let limit = option.limit else { return "" }
        return limit.maximum.map { " (\(limit.minimum)-\($0))" } ?? ""
    }

    @Option(help: "Read these options from a JSON file (moe tune writes one, docs/tuning.md); flags given here override it.")
    var config: String?

    @Option(help: "Worker threads\(limit(.threads)); default: the cores available. More threads help until memory bandwidth is the limit.")
    var threads: Int?

    @Option(help: "Kernels (default: \(ExecutorOptions().kernels.rawValue)). fast: 8-bit activations for quantized weights, as llama.cpp. reference: dequantize and compute in f32 — slow, matches transformers to 1e-4.")
    var kernels: KernelPath?

    @Option(help: "KV cache element type (default: \(ExecutorOptions().kvCacheType.rawValue)): f16 takes half the memory, f32 is exact.")
    var kvCache: KVCache.ElementType?

    @Option(help: "Keep the whole process under this much RAM (e.g. 2GB, 1.5GiB, 800M): experts are paged from disk into a pool of what is left. Smaller is slower (more reads). Default: no limit, experts stay mapped.")
    var memory: String?

    @Option(help: "Cap the expert pool itself: bytes (64MB), a share of the model's expert bytes (25%), or min (one layer's active experts: load on demand). Works with or without --memory; smaller means more reads.")
    var expertCache: String?

    @Option(help: "Which expert to evict when the pool is full (default: \(memoryDefaults.cachePolicy.rawValue)): auto (follows whichever of nextuse, lfu, edgemoe, lru and decayed lfu would have hit most on the recent requests; a little bookkeeping per request), lru, lfu, fifo, or edgemoe (frequency over forward layer distance). moe tune measures which pays on a workload.")
    var cachePolicy: CachePolicyKind?

    @Option(help: "Longest context (prompt + generated tokens) to plan the KV cache for. Larger costs KV memory under --memory. Default: the model's, at most \(Model.MemoryOptions.defaultContextCap).")
    var context: Int?

    @Option(help: "When paging, load the experts of the next layers while this one computes (default: \(memoryDefaults.prefetch.rawValue)). none: measured fastest on this kind of machine (docs/performance.md); lookahead: the next layer's gate on this hidden state; path: EdgeMoE statistics from moe calibrate; hybrid: both. Pays when a layer's compute outlasts its reads; wrong guesses cost reads and pool space.")
    var prefetch: PredictorKind?

    @Option(help: "MoE layers ahead to prefetch\(limit(.prefetchDepth)); default \(memoryDefaults.prefetchDepth). Deeper hides more latency but guesses worse.")
    var prefetchDepth: Int?

    @Option(help: "Experts prefetched per layer ahead (default: the model's top-k + 1). Wider raises recall and wasted reads.")
    var prefetchWidth: Int?

    @Option(help: "Path statistics written by moe calibrate (default: MODEL.calibration.json when it exists).")
    var calibration: String?

    @Option(help: "Threads that read prefetched experts\(limit(.loaderThreads)); default \(memoryDefaults.loaderThreads). Each adds a staging buffer to the budget.")
    var loaderThreads: Int?

    @Option(help: "Reads in flight per expert load\(limit(.readDepth)); default \(memoryDefaults.readDepth). Each expert read is cut into this many pieces read at once: deeper keeps a fast disk busy, 1 reads one piece at a time. No extra memory.")
    var readDepth: Int?

    @Option(help: "On an expert miss during decode (default: \(memoryDefaults.onMiss.rawValue)): exact waits for the expert's read; lowbit computes it from the store's low-bit copy (moe convert --miss-copy), read in a fraction of the time, while the exact one loads for later tokens. lowbit is faster under tight memory and LOSSY (docs/quality.md).")
    var onMiss: MissPolicy?

    @Option(help: "Prompt tokens per forward pass\(limit(.promptChunk)); default \(memoryDefaults.promptChunk), less when --memory leaves the expert pool too small for a prefill wave. Larger reads each expert once for more tokens but takes more scratch memory from the pool; results do not depend on it.")
    var promptChunk: Int?

    @Option(help: "Missing experts a prefill wave reads ahead of the one computing\(limit(.readAhead)); default \(ExecutorOptions.defaultReadAhead). 0 reads each on demand; more keeps the disk busier and takes pool room earlier.")
    var readAhead: Int?

    /// The flags over the `--config` file, checked; set by `check()`.
    var resolved = RunConfiguration()

    /// What the command line sets, without the file.
    var flags: RunConfiguration {
        var c = RunConfiguration()
        (c.memory, c.expertCache, c.cachePolicy, c.prefetch) = (memory, expertCache, cachePolicy, prefetch)
        (c.prefetchDepth, c.prefetchWidth, c.loaderThreads, c.threads) = (prefetchDepth, prefetchWidth, loaderThreads, threads)
        (c.kernels, c.kvCache, c.context, c.calibration) = (kernels, kvCache, context, calibration)
        c.readDepth = readDepth
        (c.onMiss, c.promptChunk, c.readAhead) = (onMiss, promptChunk, readAhead)
        return c
    }

    mutating func check() throws {
        var c = flags
        do { try c.validate() } catch { throw ValidationError(error.flagDescription) }
        if let config {
            do { c = c.filling(from: try RunConfiguration.load(path: config)) } catch { throw ValidationError("\(error)") }
        }
        resolved = c
    }
}

extension RunConfiguration {
    /// Opens `path` with these options, recording expert accesses for the paging summary.
    func open(_ path: String) throws -> Model {
        let model = try Model(path: path, options: executorOptions, memory: memoryOptions)
        model.pagedExperts?.recordsAccesses = true
        return model
    }
}
