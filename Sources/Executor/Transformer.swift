import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router

/// The transformer forward pass for every supported family: token embedding, then per layer
/// an attention block and a feed-forward block, each after its RMSNorm and each added to the
/// residual stream, then the output norm and the logits.
///
/// A family is its ``ModelConfiguration``, its weight names (``WeightName``) and the blocks its
/// layers use (``AttentionBlocks``, ``FeedForwardBlocks``); the blocks load their own weights.
/// Dense weights are views into the model source (norms are converted to f32 once); expert
/// weights come from an ``ExpertProvider`` a layer's active experts at a time, so paging
/// stores plug in unchanged. Matrix products run on a persistent ``ThreadPool``, split by
/// output rows.
///
/// One forward pass runs at a time: a pass holds the transformer's lock, which owns the
/// workspace and the prefetch state, so a second task calling ``forward(tokens:cache:logits:observer:)``
/// waits for the first (or, with ``ExecutorOptions/ConcurrentUse/reject``, gets
/// ``ExecutorError/busy``).
public final class Transformer: Sendable {
    public let configuration: ModelConfiguration
    public let experts: any ExpertProvider
    public let options: ExecutorOptions
    public let pool: ThreadPool
    let embedding: TensorView
    let outputNorm: [Float]
    let output: Linear
    let layers: [Layer]
    private let state: Locked<PassState>

    /// One layer: the norms and the two blocks.
    struct Layer: Sendable {
        let attentionNorm: [Float]
        let attention: any AttentionBlock
        let ffnNorm: [Float]
        let ffn: any FeedForwardBlock
    }

    /// What forward passes mutate, owned by the transformer's lock.
    private struct PassState {
        let workspace: Workspace
        let prefetch: PrefetchDriver
        var layerTimingObserver: (@Sendable (LayerTiming) -> Void)?
    }

    /// Guesses the experts of the layers ahead during decode so the store can load them while
    /// this layer computes (nil: no prefetching). Setting it waits for a running pass.
    public var predictor: ExpertPredictor? {
        get { state.withLock { $0.prefetch.predictor } }
        set { state.withLock { $0.prefetch.predictor = newValue } }
    }

    /// Precision and recall of the predictor's guesses so far.
    public var predictionStats: PredictionStats { state.withLock { $0.prefetch.stats } }

    public func resetPredictionStats() { state.withLock { $0.prefetch.resetStats() } }

    /// `--prefetch auto`: whether it is on and the times it compares (nil for other predictors).
    public var prefetchAutoStatus: String? { state.withLock { $0.prefetch.autoStatus } }

    /// The paged store's counters for `--prefetch auto`, if experts are paged.
    static func ioSample(_ experts: any ExpertProvider) -> (@Sendable () -> PrefetchGovernor.IOSample)? {
        guard let store = (experts as? PagedExpertStore) ?? (experts as? LowBitOnMiss)?.store else { return nil }
        let count = (0..<store.catalog.layerCount).reduce(0) { n, l in
            n + (0..<store.catalog.expertCount).filter { store.catalog.entry(ExpertKey(layer: l, expert: $0)) != nil }.count
        }
        let expertBytes = store.catalog.totalBytes / max(1, count)
        return {
            let m = store.metrics
            return PrefetchGovernor.IOSample(bytesRead: m.bytesRead, readSeconds: m.readSeconds, wouldMiss: m.misses + m.prefetchUseful, expertBytes: expertBytes)
        }
    }

    /// Receives every layer's attention and FFN times (nil: nothing is timed), on the thread
    /// running the pass.
    public var layerTimingObserver: (@Sendable (LayerTiming) -> Void)? {
        get { state.withLock { $0.layerTimingObserver } }
        set { state.withLock { $0.layerTimingObserver = newValue } }
    }

    /// Builds the executor for `source`. Experts default to views into the source itself.
    public init(source: ModelSource, experts: (any ExpertProvider)? = nil, options: ExecutorOptions = ExecutorOptions()) throws {
        let c = source.configuration
        configuration = c
        self.options = options
        let experts = try experts ?? ResidentExpertStore(source: source)
        self.experts = experts
        let weights = WeightLoader(source: source)
        let h = c.hiddenSize

        embedding = try source.require(.tokenEmbedding, shape: [h, c.vocabSize])
        outputNorm = try weights.vector(.outputNorm, h)
        if c.tiedEmbeddings, try source.weight(.output) == nil {
            output = try Linear(embedding, bias: nil)
        } else {
            output = try weights.linear(.output, inputs: h, outputs: c.vocabSize)
        }
        layers = try (0..<c.layerCount).map { l in
            let attention = try AttentionBlocks.make(layer: l, weights: weights)
            return Layer(attentionNorm: try weights.vector(.attentionNorm(l), h), attention: attention,
                         ffnNorm: try weights.vector(.ffnNorm(l), h), ffn: try FeedForwardBlocks.make(layer: l, weights: weights, experts: experts))
        }
        pool = ThreadPool(threads: options.threads)

        var gates: [Int: PrefetchDriver.Gate] = [:]
        for (l, layer) in layers.enumerated() {
            if let moe = layer.ffn as? MoEFeedForward { gates[l] = PrefetchDriver.Gate(gate: moe.gate, norm: layer.ffnNorm, router: moe.router) }
        }
        state = Locked(PassState(workspace: Workspace(configuration: c, threads: pool.threads),
                                 prefetch: PrefetchDriver(configuration: c, gates: gates, experts: experts, ioSample: Transformer.ioSample(experts))))
    }

    /// A cache for one sequence of at most `maxPositions` tokens (default: the model's context).
    public func makeCache(maxPositions: Int? = nil) -> KVCache {
        KVCache(layerCount: configuration.layerCount, kvDim: configuration.kvDim, valueDim: configuration.valueCacheDim,
                maxPositions: min(maxPositions ?? configuration.contextLength, configuration.contextLength),
                elementType: options.kvCacheType, windows: configuration.cacheWindows)
    }

    /// Which positions' logits ``forward(tokens:cache:logits:observer:)`` returns.
    public enum LogitsSelection: Sendable {
        case all, last
    }

    /// Runs `tokens` after whatever `cache` already holds and appends them to it.
    ///
    /// - Returns: logits, `vocabSize` floats per selected position, positions in order.
    public func forward(
        tokens: [Int], cache: KVCache, logits selection: LogitsSelection = .all, observer: RoutingObserver? = nil
    ) throws -> [Float] {
        guard !tokens.isEmpty else { throw ExecutorError.emptyInput }
        // A long prompt runs in chunks of at most `promptChunk` tokens (the scratch the memory
        // plan reserved); chunking changes no logit (decode and prefill share per-token arithmetic).
        let chunk = options.promptChunk ?? tokens.count
        let body = { (state: inout PassState) throws -> [Float] in
            try cache.withStorage { storage in
                guard chunk < tokens.count else {
                    return try self.run(tokens, cache: &storage, state: state, selection: selection, observer: observer)
                }
                // Everything a chunk would refuse is refused before the first one runs.
                try self.check(tokens, start: storage.count)
                try storage.reserve(tokens.count)
                var logits: [Float] = []
                var start = 0
                while start < tokens.count {
                    let end = min(tokens.count, start + max(1, chunk))
                    let out = try self.run(Array(tokens[start..<end]), cache: &storage, state: state, selection: selection, observer: observer)
                    if selection == .all { logits += out } else { logits = out }
                    start = end
                }
                return logits
            }
        }
        switch options.concurrentUse {
        case .wait:
            return try state.withLock(body)
        case .reject:
            guard let logits = try state.withLockIfAvailable(body) else { throw ExecutorError.busy }
            return logits
        }
    }

    /// Throws for the first token id outside the vocabulary (`start`: the first one's position).
    private func check(_ tokens: [Int], start: Int) throws {
        for (i, t) in tokens.enumerated() where t < 0 || t >= configuration.vocabSize {
            throw ExecutorError.tokenOutOfRange(token: t, position: start + i, vocabSize: configuration.vocabSize)
        }
    }

    /// One forward pass, with the transformer's and the cache's locks held.
    private func run(
        _ tokens: [Int], cache: inout KVCache.Storage, state: PassState, selection: LogitsSelection, observer: RoutingObserver?
    ) throws -> [Float] {
        let c = configuration
        let n = tokens.count
        try check(tokens, start: cache.count)
        try cache.reserve(n)
        let start = cache.count
        let h = c.hiddenSize
        let ws = state.workspace
        ws.reserve(tokens: n)
        var pass = ForwardPass(pool: pool, kernels: options.kernels, workspace: ws, tokens: n, start: start, observer: observer, prefetch: state.prefetch)
        pass.expertActivations = options.expertActivations
        pass.readAhead = options.readAhead
        let storage = cache

        let x = ws.residual.pointer
        for (t, token) in tokens.enumerated() {
            try embedding.dequantizeRow(token, into: x + t * h)
        }
        let timing = state.layerTimingObserver
        for (l, layer) in layers.enumerated() {
            let t0 = timing == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            let normed = ws.normed.reset(tokens: n)
            for t in 0..<n {
                Ops.rmsNorm(x + t * h, weight: layer.attentionNorm, eps: c.rmsNormEpsilon, count: h, into: normed.row(t))
            }
            let attended = ws.attentionOutput.pointer
            try layer.attention.forward(normed, layer: l, cache: storage, pass: pass, output: attended)
            for i in 0..<(n * h) { x[i] += attended[i] }

            let t1 = timing == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            let input = ws.ffnInput.reset(tokens: n)
            for t in 0..<n {
                Ops.rmsNorm(x + t * h, weight: layer.ffnNorm, eps: c.rmsNormEpsilon, count: h, into: input.row(t))
            }
            let y = ws.ffnOutput.pointer
            y.initialize(repeating: 0, count: n * h)
            try layer.ffn.forward(input, layer: l, pass: pass)
            for i in 0..<(n * h) { x[i] += y[i] }
            if let timing {
                timing(LayerTiming(layer: l, tokens: n, position: start, attentionStart: t0, ffnStart: t1, ffnEnd: DispatchTime.now().uptimeNanoseconds))
            }
        }
        cache.advance(by: n)

        let rows = selection == .all ? Array(0..<n) : [n - 1]
        let normed = ws.normed.reset(tokens: rows.count)
        for (i, t) in rows.enumerated() {
            Ops.rmsNorm(x + t * h, weight: outputNorm, eps: c.rmsNormEpsilon, count: h, into: normed.row(i))
        }
        var logits = [Float](repeating: 0, count: rows.count * c.vocabSize)
        try logits.withUnsafeMutableBufferPointer { out in
            try pass.project([output], input: normed, outputs: [out.baseAddress!])
        }
        return logits
    }
}
