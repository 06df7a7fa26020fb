import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router

public enum ExecutorError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(token: Int, position: Int, vocabSize: Int)
    case contextFull(needed: Int, limit: Int)
    case emptyInput

    public var description: String {
        switch self {
        case let .tokenOutOfRange(token, position, vocab):
            return "token id \(token) at position \(position) is outside the vocabulary (0..<\(vocab))"
        case let .contextFull(needed, limit):
            return "the context would hold \(needed) positions, more than its limit of \(limit)"
        case .emptyInput:
            return "no tokens to evaluate"
        }
    }
}

/// Called for every token of every MoE layer with the experts the router chose.
/// `position` is the token's absolute position in the sequence.
public typealias RoutingObserver = (_ layer: Int, _ position: Int, _ choices: [ExpertChoice]) -> Void

/// Wall-clock times of one layer of one forward pass (`DispatchTime` uptime nanoseconds), for
/// traces. The FFN span includes any wait for experts the store had to load.
public struct LayerTiming: Sendable, Equatable {
    public var layer: Int
    /// Tokens in the pass and the position of the first.
    public var tokens: Int
    public var position: Int
    public var attentionStart: UInt64
    public var ffnStart: UInt64
    public var ffnEnd: UInt64
}

/// Tunable execution settings.
public struct ExecutorOptions: Sendable {
    /// Worker threads (including the caller). More threads help until memory bandwidth is saturated.
    public var threads: Int
    /// `fast`: llama.cpp-style 8-bit activations for block-quantized weights. `reference`:
    /// dequantize and compute in f32 (slow; logits match transformers to 1e-4).
    public var kernels: KernelPath
    /// Element type of the KV cache: f16 halves its memory, f32 is exact.
    public var kvCacheType: KVCache.ElementType

    public init(threads: Int = ThreadPool.defaultThreadCount, kernels: KernelPath = .fast, kvCacheType: KVCache.ElementType = .f16) {
        self.threads = max(1, threads)
        self.kernels = kernels
        self.kvCacheType = kvCacheType
    }
}

/// The transformer forward pass for every supported family, driven by ``ModelConfiguration``.
///
/// Dense weights are views into the model source (norms are converted to f32 once); expert
/// weights come from an ``ExpertProvider`` a layer's active experts at a time, so paging
/// stores plug in unchanged. Matrix products run on a persistent ``ThreadPool``, split by
/// output rows. A decode step (one token) runs all active experts of a layer in one fused
/// pass: gate and up projections with SiLU·mul for every active expert, then one pass over
/// the output rows that sums each expert's down projection weighted by its router weight.
/// Prefill groups the tokens routed to each expert and runs them through it together.
///
/// A `Transformer` runs one forward pass at a time.
public final class Transformer: @unchecked Sendable {
    public let configuration: ModelConfiguration
    public let experts: ExpertProvider
    public let options: ExecutorOptions
    public let pool: ThreadPool
    let layers: [LayerWeights]
    let embedding: TensorView
    let outputNorm: [Float]
    let output: Linear
    let rope: Rope
    let router: Router
    /// Guesses the experts of the layers ahead during decode so the store can load them while
    /// this layer computes (nil: no prefetching).
    public var predictor: ExpertPredictor?
    /// Precision and recall of the predictor's guesses so far.
    public private(set) var predictionStats = PredictionStats()
    /// Predictions made for layers not yet reached in the current decode step.
    private var pendingPredictions: [Int: [Int]] = [:]
    private var routedThisStep: [Int: [Int]] = [:]
    private lazy var moeLayers: [Int] = configuration.moeLayers
    /// Receives every layer's attention and FFN times (nil: nothing is timed).
    public var layerTimingObserver: ((LayerTiming) -> Void)?

    public func resetPredictionStats() { predictionStats = PredictionStats() }

    struct FFN {
        let gate: Linear, up: Linear, down: Linear
    }

    struct LayerWeights {
        let attentionNorm: [Float]
        let query: Linear, key: Linear, value: Linear, attentionOutput: Linear
        let queryNorm: [Float]?, keyNorm: [Float]?
        let ffnNorm: [Float]
        let router: Linear?
        let shared: FFN?
        let sharedRouter: Linear?
        let dense: FFN?
    }

    /// Builds the executor for `source`. Experts default to views into the source itself.
    public init(source: ModelSource, experts: ExpertProvider? = nil, options: ExecutorOptions = ExecutorOptions()) throws {
        let c = source.configuration
        configuration = c
        self.options = options
        self.experts = try experts ?? ResidentExpertStore(source: source)
        rope = Rope(configuration: c)
        router = Router(configuration: c)
        let h = c.hiddenSize

        func vector(_ name: WeightName, _ count: Int) throws -> [Float] {
            try source.require(name, shape: [count]).toFloats()
        }
        func linear(_ name: WeightName, inputs: Int, outputs: Int, bias: WeightName? = nil) throws -> Linear {
            let weight = try source.require(name, shape: [inputs, outputs])
            let b = try bias.flatMap { try source.optional($0, shape: [outputs])?.toFloats() }
            return try Linear(weight, bias: b)
        }
        func ffn(_ gate: WeightName, _ up: WeightName, _ down: WeightName, size: Int) throws -> FFN {
            FFN(gate: try linear(gate, inputs: h, outputs: size), up: try linear(up, inputs: h, outputs: size),
                down: try linear(down, inputs: size, outputs: h))
        }

        embedding = try source.require(.tokenEmbedding, shape: [h, c.vocabSize])
        outputNorm = try vector(.outputNorm, h)
        if c.tiedEmbeddings, try source.weight(.output) == nil {
            output = try Linear(embedding, bias: nil)
        } else {
            output = try linear(.output, inputs: h, outputs: c.vocabSize)
        }

        layers = try (0..<c.layerCount).map { l in
            let q = try linear(.query(l), inputs: h, outputs: c.queryDim, bias: .queryBias(l))
            let k = try linear(.key(l), inputs: h, outputs: c.kvDim, bias: .keyBias(l))
            let v = try linear(.value(l), inputs: h, outputs: c.kvDim, bias: .valueBias(l))
            if c.attentionBias, q.bias == nil || k.bias == nil || v.bias == nil {
                throw ModelFormatError.missingTensor(source.fileName(of: .queryBias(l)) + " (or its key/value twin)", model: source.path)
            }
            var qNorm: [Float]? = nil, kNorm: [Float]? = nil
            switch c.qkNorm {
            case .none: break
            case .perHead:
                qNorm = try vector(.queryNorm(l), c.headDim)
                kNorm = try vector(.keyNorm(l), c.headDim)
            case .wholeProjection:
                qNorm = try vector(.queryNorm(l), c.queryDim)
                kNorm = try vector(.keyNorm(l), c.kvDim)
            }
            let isMoE = c.layerKinds[l] == .moe
            return LayerWeights(
                attentionNorm: try vector(.attentionNorm(l), h),
                query: q, key: k, value: v,
                attentionOutput: try linear(.attentionOutput(l), inputs: c.queryDim, outputs: h),
                queryNorm: qNorm, keyNorm: kNorm,
                ffnNorm: try vector(.ffnNorm(l), h),
                router: isMoE ? try linear(.router(l), inputs: h, outputs: c.expertCount) : nil,
                shared: isMoE && c.hasSharedExpert
                    ? try ffn(.sharedGate(l), .sharedUp(l), .sharedDown(l), size: c.sharedExpertFFNSize) : nil,
                sharedRouter: isMoE && c.hasSharedExpert && c.sharedExpertGated
                    ? try linear(.sharedExpertRouter(l), inputs: h, outputs: 1) : nil,
                dense: isMoE ? nil : try ffn(.denseGate(l), .denseUp(l), .denseDown(l), size: c.denseFFNSize))
        }
        pool = ThreadPool(threads: options.threads)
    }

    /// A cache for one sequence of at most `maxPositions` tokens (default: the model's context).
    public func makeCache(maxPositions: Int? = nil) -> KVCache {
        KVCache(layerCount: configuration.layerCount, kvDim: configuration.kvDim,
                maxPositions: min(maxPositions ?? configuration.contextLength, configuration.contextLength),
                elementType: options.kvCacheType)
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
        let c = configuration
        let n = tokens.count
        guard n > 0 else { throw ExecutorError.emptyInput }
        for (i, t) in tokens.enumerated() where t < 0 || t >= c.vocabSize {
            throw ExecutorError.tokenOutOfRange(token: t, position: cache.count + i, vocabSize: c.vocabSize)
        }
        try cache.reserve(n)
        let start = cache.count
        let h = c.hiddenSize
        let ws = Workspace(configuration: c, tokens: n, threads: pool.threads)

        for (t, token) in tokens.enumerated() {
            try embedding.dequantizeRow(token, into: ws.x + t * h)
        }
        let timing = layerTimingObserver
        for l in 0..<c.layerCount {
            let t0 = timing == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            try attention(layer: l, tokens: n, start: start, cache: cache, ws: ws)
            let t1 = timing == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            try feedForward(layer: l, tokens: n, start: start, ws: ws, observer: observer)
            if let timing {
                timing(LayerTiming(layer: l, tokens: n, position: start, attentionStart: t0, ffnStart: t1, ffnEnd: DispatchTime.now().uptimeNanoseconds))
            }
        }
        cache.advance(by: n)

        let rows = selection == .all ? Array(0..<n) : [n - 1]
        let normed = ws.normed
        normed.reset(tokens: rows.count)
        for (i, t) in rows.enumerated() {
            Ops.rmsNorm(ws.x + t * h, weight: outputNorm, eps: c.rmsNormEpsilon, count: h, into: normed.row(i))
        }
        var logits = [Float](repeating: 0, count: rows.count * c.vocabSize)
        try logits.withUnsafeMutableBufferPointer { out in
            try project([output], input: normed, outputs: [out.baseAddress!], ws: ws)
        }
        return logits
    }

    /// Runs several linear layers over the same input in one parallel region, split by rows:
    /// `outputs[i][t * rows_i + r] = layers[i].W[r] · input[t]` (+ bias).
    func project(_ linears: [Linear], input: ActivationBatch, tokens: Range<Int>? = nil, outputs: [UnsafeMutablePointer<Float>], ws: Workspace) throws {
        if linears.contains(where: { Kernels.needsQuantizedInput($0.matrix.type, path: options.kernels) }) { input.quantize() }
        let offsets = linears.reduce(into: [0]) { $0.append($0.last! + $1.outputs) }
        let path = options.kernels
        try parallel(offsets.last!, grain: 16) { range, worker in
            for (i, linear) in linears.enumerated() {
                let lo = max(range.lowerBound, offsets[i]) - offsets[i], hi = min(range.upperBound, offsets[i + 1]) - offsets[i]
                guard lo < hi else { continue }
                try Kernels.matmul(linear.matrix, rows: lo..<hi, input: input, tokens: tokens, output: outputs[i], ldy: linear.outputs,
                                   path: path, scratch: ws.scratch(worker))
                if let bias = linear.bias {
                    let count = tokens?.count ?? input.tokens
                    for t in 0..<count {
                        let row = outputs[i] + t * linear.outputs
                        for r in lo..<hi { row[r] += bias[r] }
                    }
                }
            }
        }
    }

    /// `pool.parallelFor` for throwing bodies: the first error is rethrown after the region.
    func parallel(_ count: Int, grain: Int, _ body: (Range<Int>, Int) throws -> Void) throws {
        let failure = FirstError()
        pool.parallelFor(count, grain: grain) { range, worker in
            do { try body(range, worker) } catch { failure.record(error) }
        }
        if let error = failure.error { throw error }
    }

    private func attention(layer l: Int, tokens n: Int, start: Int, cache: KVCache, ws: Workspace) throws {
        let c = configuration
        let w = layers[l]
        let h = c.hiddenSize, hd = c.headDim, qd = c.queryDim, kvd = c.kvDim
        let group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()
        let normed = ws.normed
        normed.reset(tokens: n)
        for t in 0..<n {
            Ops.rmsNorm(ws.x + t * h, weight: w.attentionNorm, eps: c.rmsNormEpsilon, count: h, into: normed.row(t))
        }
        try project([w.query, w.key, w.value], input: normed, outputs: [ws.q, ws.k, ws.v], ws: ws)

        for t in 0..<n {
            let pos = start + t
            let q = ws.q + t * qd, k = ws.k + t * kvd, v = ws.v + t * kvd
            if let clip = c.clipQKV {
                for i in 0..<qd { q[i] = min(max(q[i], -clip), clip) }
                for i in 0..<kvd {
                    k[i] = min(max(k[i], -clip), clip)
                    v[i] = min(max(v[i], -clip), clip)
                }
            }
            if let qn = w.queryNorm, let kn = w.keyNorm {
                if c.qkNorm == .perHead {
                    for head in 0..<c.headCount { Ops.rmsNorm(q + head * hd, weight: qn, eps: c.rmsNormEpsilon, count: hd, into: q + head * hd) }
                    for head in 0..<c.kvHeadCount { Ops.rmsNorm(k + head * hd, weight: kn, eps: c.rmsNormEpsilon, count: hd, into: k + head * hd) }
                } else {
                    Ops.rmsNorm(q, weight: qn, eps: c.rmsNormEpsilon, count: qd, into: q)
                    Ops.rmsNorm(k, weight: kn, eps: c.rmsNormEpsilon, count: kvd, into: k)
                }
            }
            rope.apply(q, heads: c.headCount, headDim: hd, position: pos)
            rope.apply(k, heads: c.kvHeadCount, headDim: hd, position: pos)
            cache.store(layer: l, position: pos, keys: k, values: v)
        }

        // Fused attention: one pass over the cache per (token, kv head) with an online softmax;
        // the query heads sharing a kv head read each key and value once.
        let attended = ws.attended
        attended.reset(tokens: n)
        pool.parallelFor(n * c.kvHeadCount) { range, worker in
            let m = ws.softmaxState(worker)
            for item in range {
                let t = item / c.kvHeadCount, kvHead = item % c.kvHeadCount
                let pos = start + t
                let first = c.slidingWindow.map { max(0, pos - $0 + 1) } ?? 0
                let offset = kvHead * hd
                for g in 0..<group {
                    m.maxima[g] = -.infinity
                    m.sums[g] = 0
                    (attended.row(t) + (kvHead * group + g) * hd).initialize(repeating: 0, count: hd)
                }
                for j in first...pos {
                    for g in 0..<group {
                        let head = kvHead * group + g
                        let out = attended.row(t) + head * hd
                        let s = cache.keyDot(layer: l, position: j, offset: offset, ws.q + t * qd + head * hd, count: hd) * scale
                        var weight: Float = 1
                        if s > m.maxima[g] {
                            let correction = expf(m.maxima[g] - s)
                            m.sums[g] *= correction
                            Kernels.scale(correction, out, count: hd)
                            m.maxima[g] = s
                        } else {
                            weight = expf(s - m.maxima[g])
                        }
                        m.sums[g] += weight
                        cache.addValue(layer: l, position: j, offset: offset, weight: weight, into: out, count: hd)
                    }
                }
                for g in 0..<group {
                    Kernels.scale(1 / m.sums[g], attended.row(t) + (kvHead * group + g) * hd, count: hd)
                }
            }
        }
        try project([w.attentionOutput], input: attended, outputs: [ws.projected], ws: ws)
        for i in 0..<(n * h) { ws.x[i] += ws.projected[i] }
    }

    private func feedForward(layer l: Int, tokens n: Int, start: Int, ws: Workspace, observer: RoutingObserver?) throws {
        let c = configuration
        let w = layers[l]
        let h = c.hiddenSize
        let input = ws.ffnInput
        input.reset(tokens: n)
        for t in 0..<n {
            Ops.rmsNorm(ws.x + t * h, weight: w.ffnNorm, eps: c.rmsNormEpsilon, count: h, into: input.row(t))
        }
        ws.moeOutput.initialize(repeating: 0, count: n * h)

        if let dense = w.dense {
            try runFFN(dense.gate, dense.up, dense.down, input: input, tokens: Array(0..<n), weights: Array(repeating: 1, count: n), ws: ws)
        } else if let routerWeights = w.router {
            // Router logits in f32 for every token, then the family's rule.
            try project([routerWeights], input: input, outputs: [ws.routerLogits], ws: ws)
            var assignments = [[(token: Int, weight: Float)]](repeating: [], count: c.expertCount)
            for t in 0..<n {
                let choices = router.route(logits: UnsafeBufferPointer(start: ws.routerLogits + t * c.expertCount, count: c.expertCount))
                observer?(l, start + t, choices)
                for choice in choices { assignments[choice.expert].append((t, choice.weight)) }
            }
            let active = (0..<c.expertCount).filter { !assignments[$0].isEmpty }
            if n == 1 { predictAhead(layer: l, chosen: active, ws: ws) }
            if n == 1 {
                try experts.withExperts(layer: l, experts: active) { weights in
                    try runActiveExperts(weights, routerWeights: active.map { assignments[$0][0].weight }, input: input, ws: ws)
                }
            } else {
                for e in active {
                    try experts.withExpert(layer: l, expert: e) { expert in
                        try runFFN(
                            try Linear(expert.gate, bias: nil), try Linear(expert.up, bias: nil), try Linear(expert.down, bias: nil),
                            input: input, tokens: assignments[e].map(\.token), weights: assignments[e].map(\.weight), ws: ws)
                    }
                }
            }
            if let shared = w.shared {
                var scales = [Float](repeating: 1, count: n)
                if let sharedRouter = w.sharedRouter {
                    try project([sharedRouter], input: input, outputs: [ws.routerLogits], ws: ws)
                    for t in 0..<n { scales[t] = Ops.sigmoid(ws.routerLogits[t]) }
                }
                try runFFN(shared.gate, shared.up, shared.down, input: input, tokens: Array(0..<n), weights: scales, ws: ws)
            }
        }
        for i in 0..<(n * h) { ws.x[i] += ws.moeOutput[i] }
    }

    /// Scores the last prediction for layer `l` against what the router chose, then predicts the
    /// next `depth` MoE layers and asks the store to prefetch them (nearest layer first). The
    /// loads overlap this layer's expert computation.
    private func predictAhead(layer l: Int, chosen: [Int], ws: Workspace) {
        guard let predictor, predictor.kind != .none else { return }
        if let predicted = pendingPredictions.removeValue(forKey: l) {
            predictionStats.record(layer: l, predicted: predicted, actual: chosen)
        }
        if l == moeLayers.first { routedThisStep.removeAll() }
        routedThisStep[l] = chosen
        guard let position = moeLayers.firstIndex(of: l) else { return }
        let previous = position > 0 ? routedThisStep[moeLayers[position - 1]] : nil
        var keys: [ExpertKey] = []
        for target in moeLayers.dropFirst(position + 1).prefix(predictor.depth) {
            var lookahead: [Float]? = nil
            if predictor.kind == .lookahead || predictor.kind == .hybrid, let gate = layers[target].router {
                lookahead = gateProbabilities(gate, norm: layers[target].ffnNorm, ws: ws)
            }
            let predicted = predictor.predict(target: target, currentLayer: l, current: chosen, previous: previous, lookahead: lookahead)
            pendingPredictions[target] = predicted
            keys += predicted.map { ExpertKey(layer: target, expert: $0) }
        }
        experts.prefetch(keys, currentLayer: l)
    }

    /// softmax(gate · rmsnorm(x)) for the current token's residual stream (decode only).
    private func gateProbabilities(_ gate: Linear, norm: [Float], ws: Workspace) -> [Float]? {
        let h = configuration.hiddenSize
        let normed = ws.batch(width: h, tokens: 1, slot: 7)
        Ops.rmsNorm(ws.x, weight: norm, eps: configuration.rmsNormEpsilon, count: h, into: normed.row(0))
        normed.invalidate()
        if Kernels.needsQuantizedInput(gate.matrix.type, path: .fast) { normed.quantize() }
        var logits = [Float](repeating: 0, count: gate.outputs)
        do {
            try logits.withUnsafeMutableBufferPointer { out in
                try Kernels.matmul(gate.matrix, rows: 0..<gate.outputs, input: normed, output: out.baseAddress!, ldy: gate.outputs,
                                   path: .fast, scratch: ws.scratch(0))
            }
        } catch {
            return nil
        }
        var probabilities = [Float](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { Router.softmax($0, into: &probabilities) }
        return probabilities
    }

    /// `moeOutput[t] += weight_t * down(silu(gate x_t) * up x_t)` for the listed tokens of `input`,
    /// the tokens batched through each weight matrix (prefill, dense layers, shared experts).
    private func runFFN(_ gate: Linear, _ up: Linear, _ down: Linear, input: ActivationBatch, tokens: [Int], weights: [Float], ws: Workspace) throws {
        let h = configuration.hiddenSize
        let size = gate.outputs
        let count = tokens.count
        // Gather the tokens into a contiguous batch (a no-op copy when they are all tokens).
        let gathered: ActivationBatch
        if tokens.count == input.tokens, tokens.enumerated().allSatisfy({ $0.offset == $0.element }) {
            gathered = input
        } else {
            gathered = ws.batch(width: h, tokens: count, slot: 0)
            for (i, t) in tokens.enumerated() { gathered.row(i).update(from: input.row(t), count: h) }
        }
        let g = ws.buffer(count * size, slot: 0), u = ws.buffer(count * size, slot: 1)
        let hidden = ws.batch(width: size, tokens: count, slot: 1)
        let path = options.kernels
        if Kernels.needsQuantizedInput(gate.matrix.type, path: path) || Kernels.needsQuantizedInput(up.matrix.type, path: path) {
            gathered.quantize()
        }
        // Gate and up in one pass over rows, SiLU·mul fused into the same pass.
        try parallel(size, grain: 8) { range, worker in
            try Kernels.matmul(gate.matrix, rows: range, input: gathered, output: g, ldy: size, path: path, scratch: ws.scratch(worker))
            try Kernels.matmul(up.matrix, rows: range, input: gathered, output: u, ldy: size, path: path, scratch: ws.scratch(worker))
            for t in 0..<count {
                let out = hidden.row(t)
                for r in range { out[r] = Ops.silu(g[t * size + r]) * u[t * size + r] }
            }
        }
        let y = ws.buffer(count * h, slot: 2)
        try project([down], input: hidden, outputs: [y], ws: ws)
        for (i, t) in tokens.enumerated() {
            let out = ws.moeOutput + t * h, src = y + i * h
            let weight = weights[i]
            for r in 0..<h { out[r] += weight * src[r] }
        }
    }

    /// One token through all its active experts (decode): gate·up·SiLU for every expert in one
    /// parallel pass, then one pass over the output rows summing the weighted down projections
    /// in expert order. Arithmetic per row is identical to ``runFFN`` so decode and prefill agree.
    private func runActiveExperts(_ experts: [ExpertWeights], routerWeights: [Float], input: ActivationBatch, ws: Workspace) throws {
        let h = configuration.hiddenSize
        let k = experts.count
        guard k > 0 else { return }
        let size = experts[0].gate.rowCount
        let gates = try experts.map { try WeightMatrix(view: $0.gate) }
        let ups = try experts.map { try WeightMatrix(view: $0.up) }
        let downs = try experts.map { try WeightMatrix(view: $0.down) }
        let path = options.kernels
        if gates.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) || ups.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) {
            input.quantize()
        }
        let g = ws.buffer(k * size, slot: 0), u = ws.buffer(k * size, slot: 1)
        let hidden = ws.batch(width: size, tokens: k, slot: 1)
        try parallel(k * size, grain: 8) { range, worker in
            for e in 0..<k {
                let lo = max(range.lowerBound, e * size) - e * size, hi = min(range.upperBound, (e + 1) * size) - e * size
                guard lo < hi else { continue }
                try Kernels.matmul(gates[e], rows: lo..<hi, input: input, tokens: 0..<1, output: g + e * size, ldy: size, path: path, scratch: ws.scratch(worker))
                try Kernels.matmul(ups[e], rows: lo..<hi, input: input, tokens: 0..<1, output: u + e * size, ldy: size, path: path, scratch: ws.scratch(worker))
                let out = hidden.row(e)
                for r in lo..<hi { out[r] = Ops.silu(g[e * size + r]) * u[e * size + r] }
            }
        }
        if downs.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) { hidden.quantize() }
        let y = ws.buffer(k * h, slot: 2)
        let out = ws.moeOutput
        try parallel(h, grain: 16) { range, worker in
            for e in 0..<k {
                try Kernels.matmul(downs[e], rows: range, input: hidden, tokens: e..<(e + 1), output: y + e * h, ldy: h, path: path, scratch: ws.scratch(worker))
            }
            for r in range {
                for e in 0..<k { out[r] += routerWeights[e] * y[e * h + r] }
            }
        }
    }
}

/// Collects the first error thrown inside a parallel region.
final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    func record(_ e: Error) {
        lock.lock()
        if error == nil { error = e }
        lock.unlock()
    }
}

/// A linear layer `y = W x (+ b)`.
struct Linear {
    let matrix: WeightMatrix
    let bias: [Float]?
    /// Keeps the mapping that `matrix` points into alive.
    let view: TensorView

    init(_ view: TensorView, bias: [Float]?) throws {
        self.view = view
        self.matrix = try WeightMatrix(view: view)
        self.bias = bias
    }

    var inputs: Int { matrix.columns }
    var outputs: Int { matrix.rows }
}

extension WeightMatrix {
    init(view: TensorView) throws {
        guard let base = view.data.baseAddress else {
            throw ModelFormatError.invalidTensor(path: "", tensor: view.name, reason: "has no data")
        }
        try self.init(type: view.type, base: base, rows: view.rowCount, columns: view.rowLength)
    }
}

/// Scratch memory for one forward call.
final class Workspace {
    let x, q, k, v, projected, moeOutput, routerLogits: UnsafeMutablePointer<Float>
    let normed, attended, ffnInput: ActivationBatch
    private var owned: [UnsafeMutablePointer<Float>] = []
    private let scratchWidth: Int
    private let scratchBase: UnsafeMutablePointer<Float>
    private var buffers: [Int: (UnsafeMutablePointer<Float>, Int)] = [:]
    private var batches: [Int: ActivationBatch] = [:]
    private var softmax: [SoftmaxState]

    final class SoftmaxState {
        var maxima: [Float]
        var sums: [Float]
        init(group: Int) {
            maxima = Array(repeating: 0, count: group)
            sums = Array(repeating: 0, count: group)
        }
    }

    init(configuration c: ModelConfiguration, tokens n: Int, threads: Int) {
        func make(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            return p
        }
        let h = c.hiddenSize
        x = make(n * h)
        q = make(n * c.queryDim)
        k = make(n * c.kvDim)
        v = make(n * c.kvDim)
        projected = make(n * h)
        moeOutput = make(n * h)
        routerLogits = make(n * max(c.expertCount, 1))
        owned = [x, q, k, v, projected, moeOutput, routerLogits]
        normed = ActivationBatch(width: h, capacity: n)
        attended = ActivationBatch(width: c.queryDim, capacity: n)
        ffnInput = ActivationBatch(width: h, capacity: n)
        scratchWidth = max(h, c.queryDim, c.expertFFNSize, c.sharedExpertFFNSize, c.denseFFNSize, 1)
        scratchBase = make(scratchWidth * threads)
        softmax = (0..<threads).map { _ in SoftmaxState(group: c.headCount / max(c.kvHeadCount, 1)) }
    }

    deinit {
        for p in owned { p.deallocate() }
        scratchBase.deallocate()
        for (p, _) in buffers.values { p.deallocate() }
    }

    /// Per-worker scratch of the widest row.
    func scratch(_ worker: Int) -> UnsafeMutablePointer<Float> { scratchBase + worker * scratchWidth }

    func softmaxState(_ worker: Int) -> SoftmaxState { softmax[worker] }

    /// A reusable buffer of at least `count` floats, one per slot.
    func buffer(_ count: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        if let (p, capacity) = buffers[slot], capacity >= count { return p }
        if let (p, _) = buffers[slot] { p.deallocate() }
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        buffers[slot] = (p, max(count, 1))
        return p
    }

    /// A reusable activation batch of the given width, one per slot, reset to `tokens`.
    func batch(width: Int, tokens: Int, slot: Int) -> ActivationBatch {
        let key = slot << 32 | width
        if let b = batches[key], b.capacity >= tokens {
            b.reset(tokens: tokens)
            return b
        }
        let b = ActivationBatch(width: width, capacity: tokens)
        b.reset(tokens: tokens)
        batches[key] = b
        return b
    }
}
