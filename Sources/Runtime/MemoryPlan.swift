import Executor
import ExpertStore
import Foundation
import ModelFormats

/// How `--memory B` is spent (docs/design.md §3): everything the process keeps resident —
/// what it already holds (runtime, parsed metadata), dense weights, KV cache, scratch, the
/// loader's staging buffers and a safety margin — and the expert pool gets the rest.
public struct MemoryPlan: Codable, Sendable {
    public var budget: Int
    /// Resident bytes measured when the plan was made (runtime, libraries, parsed metadata).
    public var baseline: Int
    public var denseWeights: Int
    public var kvCache: Int
    public var scratch: Int
    public var staging: Int
    /// Bytes the command keeps beside the model (``Model/MemoryOptions/reserved``: `moe
    /// calibrate`'s statistics and file writing); nil when none.
    public var reserved: Int?
    public var margin: Int
    public var pool: Int
    /// The smallest pool that can hold one layer's active experts at once.
    public var minimumPool: Int
    /// Prompt tokens per forward pass the scratch is planned for (docs/design.md §5, *Prefill in
    /// waves*): the requested chunk, or less when that would leave the pool too small for a
    /// prefill wave.
    public var promptChunk: Int

    /// The smallest budget that would work (the margin grows with the budget, so this solves
    /// budget = fixed needs + minimum pool + margin(budget)).
    public var minimumBudget: Int {
        let fixedMargin = margin - budget * MemoryPlan.marginPercent / 100
        let needs = baseline + denseWeights + kvCache + scratch + staging + (reserved ?? 0) + fixedMargin + minimumPool
        return (needs * 100 + (100 - MemoryPlan.marginPercent) - 1) / (100 - MemoryPlan.marginPercent)
    }

    static let marginPercent = 3

    /// Fixed bytes for allocator slack, thread stacks and Foundation, plus 3% of the budget.
    static func margin(for budget: Int, threads: Int) -> Int { 24 << 20 + threads * (1 << 20) + budget * marginPercent / 100 }

    /// The KV cache of one sequence of up to `maxPositions` tokens, prompts evaluated `chunk` at a time.
    public static func kvCacheBytes(_ c: ModelConfiguration, options: ExecutorOptions, maxPositions: Int, chunk: Int) -> Int {
        let kvElement = options.kvCacheType == .f16 ? 2 : 4
        // Sliding-window layers keep only their window (plus one prompt chunk): KVCache's rings.
        // Latent attention caches its compressed row (latent + rotary key), not per-head keys and values.
        return c.latentAttention == nil
            ? KVCache.plannedBytes(kvDim: c.kvDim, elementSize: kvElement, maxPositions: maxPositions,
                                   chunk: min(chunk, maxPositions), windows: c.cacheWindows)
            : maxPositions * c.kvBytesPerPosition(elementSize: kvElement)
    }

    /// The widest input any matrix of the model takes.
    static func widestInput(_ c: ModelConfiguration) -> Int {
        max(c.hiddenSize, c.queryDim, c.attentionOutputDim, c.expertFFNSize, c.sharedExpertFFNSize, c.denseFFNSize)
    }

    /// Scratch per token of a forward pass (activations of every stage, the tiled GEMM's copies).
    public static func scratchPerToken(_ c: ModelConfiguration, options: ExecutorOptions) -> Int {
        let widest = widestInput(c)
        let latent = c.latentAttention.map { 2 * c.headCount * $0.kvRank + $0.queryRank } ?? 0
        // The tiled prefill GEMM (Q3_K, IQ4_XS) keeps, per compute thread, an interleaved int8 copy
        // of its input tokens plus per-256-column scales and sums: at most 1 + 1/8 + 1/64 bytes per
        // column and token of the widest matrix input.
        let tiledCopy = options.threads * (widest + widest / 8 + widest / 64)
        return 4 * (8 * c.hiddenSize + 3 * c.queryDim + 3 * c.kvDim + c.expertCount + 3 * widest + latent) + 2 * (c.hiddenSize + c.queryDim)
            + tiledCopy
    }

    /// Scratch of a forward pass whatever its length: one row of logits and its sampling copy,
    /// per-thread rows, attention scores over the context.
    public static func fixedScratch(_ c: ModelConfiguration, options: ExecutorOptions, maxPositions: Int) -> Int {
        let widest = widestInput(c)
        return 4 * c.vocabSize * 2 + options.threads * widest * 4 + 4 * maxPositions
    }

    /// Plans `budget` for `source` running contexts of up to `maxPositions` tokens, prompts
    /// of up to `promptChunk` tokens per forward pass, beside `reserved` bytes of the command's own.
    public static func make(
        budget: Int, source: ModelSource, catalog: ExpertCatalog, options: ExecutorOptions, maxPositions: Int, promptChunk: Int,
        loaderThreads: Int = 0, missCopyBuffers: Int = 0, reserved: Int = 0
    ) throws -> MemoryPlan {
        let c = source.configuration
        let inspection = try ModelInspection(source: source)
        let kv = kvCacheBytes(c, options: options, maxPositions: maxPositions, chunk: promptChunk)
        let perToken = scratchPerToken(c, options: options)
        let fixedScratch = fixedScratch(c, options: options, maxPositions: maxPositions)
        // Each loading thread (the caller, and every prefetch loader) has a staging buffer (the
        // longest read) and, where records are compressed, a decode buffer (the largest expert);
        // raw records and GGUF/Hugging Face slabs are read straight into their pool blocks.
        // `--on-miss lowbit` adds one buffer per top-k slot for the low-bit copies.
        let staging = (1 + loaderThreads) * (catalog.largestRead + (catalog.decodes ? catalog.largestActiveSet(k: 1) : 0)) + missCopyBuffers
        var plan = MemoryPlan(
            budget: budget, baseline: ProcessStats.residentBytes ?? 32 << 20, denseWeights: inspection.denseBytes + (inspection.absorbedAttentionBytes ?? 0), kvCache: kv,
            scratch: fixedScratch, staging: staging, reserved: reserved > 0 ? reserved : nil, margin: margin(for: budget, threads: options.threads), pool: 0,
            minimumPool: catalog.minimumPool(k: c.expertsPerToken), promptChunk: 1)
        let rest = budget - plan.baseline - plan.denseWeights - plan.kvCache - fixedScratch - plan.staging - max(reserved, 0) - plan.margin
        // A prompt never outgrows the context, so a short context plans a shorter chunk.
        plan.promptChunk = chunk(requested: min(promptChunk, maxPositions), perToken: perToken, available: rest,
                                 wave: max(plan.minimumPool, catalog.largestActiveSet(k: 1 + options.readAhead)), minimumPool: plan.minimumPool)
        plan.scratch = fixedScratch + plan.promptChunk * perToken
        plan.pool = rest - plan.promptChunk * perToken
        guard plan.pool >= plan.minimumPool else {
            throw ExpertStoreError.budgetTooSmall(budget: budget, minimum: plan.minimumBudget, detail: plan.breakdown)
        }
        return plan
    }

    /// The prompt chunk (docs/design.md §5, *Prefill in waves*): `requested` tokens if the pool
    /// left beside their scratch (`available − chunk × perToken`) holds a wave's working set
    /// (`wave`: the expert computing and the reads in flight, at least `minimumPool`); else the
    /// largest chunk that leaves it that; else the largest that leaves `minimumPool`; at least 1.
    public static func chunk(requested: Int, perToken: Int, available: Int, wave: Int, minimumPool: Int) -> Int {
        let requested = max(1, requested)
        for pool in [wave, minimumPool] {
            let fits = (available - pool) / max(1, perToken)
            if fits >= 1 { return min(requested, fits) }
        }
        return 1
    }

    public var breakdown: String {
        "baseline \(Units.formatBytes(baseline)) + dense weights \(Units.formatBytes(denseWeights)) + KV cache \(Units.formatBytes(kvCache)) + scratch \(Units.formatBytes(scratch)) (\(promptChunk)-token prompt chunks) + staging \(Units.formatBytes(staging))\(reserved.map { " + the command's own \(Units.formatBytes($0))" } ?? "") + margin \(Units.formatBytes(margin)) + at least \(Units.formatBytes(minimumPool)) of experts for one layer"
    }
}
