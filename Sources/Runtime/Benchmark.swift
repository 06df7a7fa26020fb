import Executor
import ExpertStore
import Foundation
import ModelFormats
import Quantization

/// What `moe bench` measures: prefill and decode speed over repeated runs, like `llama-bench`.
public struct BenchmarkResult: Codable, Sendable {
    public struct Spread: Codable, Sendable {
        public var median: Double
        public var min: Double
        public var max: Double

        init(_ samples: [Double]) {
            let sorted = samples.sorted()
            median = sorted.isEmpty ? 0 : (sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2)
            min = sorted.first ?? 0
            max = sorted.last ?? 0
        }
    }
    public struct Phase: Codable, Sendable {
        public var tokens_per_second: Spread
    }

    public var model: String
    public var threads: Int
    public var prompt_tokens: Int
    public var gen_tokens: Int
    public var repetitions: Int
    public var kernels: String
    public var kv_cache: String
    public var isa: String
    public var prefill: Phase
    public var decode: Phase
    public var peak_rss_bytes: Int
    /// Paging counters over the measured runs (absent when every expert is resident).
    public var expert_store: ExpertStoreMetrics?
    public var memory_plan: MemoryPlan?
    /// Belady's MIN on the same accesses and the predictor's precision/recall (when paging).
    public var paging: Model.PagingReport?
    /// `exact`, or `lowbit (LOSSY, q2_K copies)` under `--on-miss lowbit`.
    public var on_miss: String = MissPolicy.exact.rawValue
}

extension Model {
    /// Times `repetitions` runs of a `promptTokens` prefill followed by `genTokens` greedy
    /// decode steps, each from an empty cache, after one unmeasured warm-up run. Prompt token
    /// ids are fixed pseudo-random ids (seeded), the same for every run.
    /// The whole measurement holds the model (``withExclusiveAccess(_:)``): another task's
    /// passes would be timed too, and the warm-up resets the store's and predictor's counters.
    public func benchmark(promptTokens: Int, genTokens: Int, repetitions: Int, progress: ((Int) -> Void)? = nil) throws -> BenchmarkResult {
        try withExclusiveAccess {
            try measure(promptTokens: promptTokens, genTokens: genTokens, repetitions: repetitions, progress: progress)
        }
    }

    private func measure(promptTokens: Int, genTokens: Int, repetitions: Int, progress: ((Int) -> Void)?) throws -> BenchmarkResult {
        let c = configuration
        var state: UInt64 = 0x5EED
        let prompt = (0..<promptTokens).map { _ -> Int in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(c.vocabSize))
        }
        var prefill: [Double] = [], decode: [Double] = []
        for run in 0...repetitions {
            let cache = try makeCache(promptTokens + genTokens + 1)
            var clock = ContinuousClock.now
            var logits = try forward(tokens: prompt, cache: cache, logits: .last)
            let prefillSeconds = (ContinuousClock.now - clock).seconds
            clock = ContinuousClock.now
            for _ in 0..<genTokens {
                logits = try forward(tokens: [Model.argmax(logits)], cache: cache, logits: .last)
            }
            let decodeSeconds = (ContinuousClock.now - clock).seconds
            guard run > 0 else {  // warm-up
                pagedExperts?.resetMetrics()
                transformer.resetPredictionStats()
                continue
            }
            if promptTokens > 0 { prefill.append(Double(promptTokens) / prefillSeconds) }
            if genTokens > 0 { decode.append(Double(genTokens) / decodeSeconds) }
            progress?(run)
        }
        var result = BenchmarkResult(
            model: source.path, threads: transformer.options.threads, prompt_tokens: promptTokens, gen_tokens: genTokens,
            repetitions: repetitions, kernels: transformer.options.kernels.rawValue, kv_cache: transformer.options.kvCacheType.rawValue,
            isa: Kernels.isa, prefill: .init(tokens_per_second: .init(prefill)), decode: .init(tokens_per_second: .init(decode)),
            peak_rss_bytes: ProcessStats.peakResidentBytes, expert_store: pagedExperts?.metrics, memory_plan: memoryPlan,
            paging: pagedExperts == nil ? nil : pagingReport())
        if let copies = missCopies { result.on_miss = "lowbit (LOSSY, \(copies.type) copies)" }
        return result
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
