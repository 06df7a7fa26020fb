import Foundation
import ExpertStore
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

/// The transformer forward pass for every supported family, driven by ``ModelConfiguration``.
///
/// Dense weights are read from the model source when the transformer is built (norms are
/// converted to f32; matrices stay views in their stored type). Expert weights come from an
/// ``ExpertProvider`` one expert at a time, so paging stores plug in unchanged.
public final class Transformer: @unchecked Sendable {
    public let configuration: ModelConfiguration
    public let experts: ExpertProvider
    let layers: [LayerWeights]
    let embedding: TensorView
    let outputNorm: [Float]
    let output: Linear
    let rope: Rope
    let router: Router

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
    public init(source: ModelSource, experts: ExpertProvider? = nil) throws {
        let c = source.configuration
        configuration = c
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
            return Linear(weight: weight, bias: b)
        }
        func ffn(_ gate: WeightName, _ up: WeightName, _ down: WeightName, size: Int) throws -> FFN {
            FFN(gate: try linear(gate, inputs: h, outputs: size), up: try linear(up, inputs: h, outputs: size),
                down: try linear(down, inputs: size, outputs: h))
        }

        embedding = try source.require(.tokenEmbedding, shape: [h, c.vocabSize])
        outputNorm = try vector(.outputNorm, h)
        if c.tiedEmbeddings, try source.weight(.output) == nil {
            output = Linear(weight: embedding, bias: nil)
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
    }

    /// A cache for one sequence of at most `maxPositions` tokens (default: the model's context).
    public func makeCache(maxPositions: Int? = nil) -> KVCache {
        KVCache(layerCount: configuration.layerCount, kvDim: configuration.kvDim,
                maxPositions: min(maxPositions ?? configuration.contextLength, configuration.contextLength))
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
        let ws = Workspace(configuration: c, tokens: n)

        for (t, token) in tokens.enumerated() {
            try embedding.dequantizeRow(token, into: ws.x + t * h)
        }
        for l in 0..<c.layerCount {
            try attention(layer: l, tokens: n, start: start, cache: cache, ws: ws)
            try feedForward(layer: l, tokens: n, start: start, ws: ws, observer: observer)
        }
        cache.advance(by: n)

        let rows = selection == .all ? Array(0..<n) : [n - 1]
        var logits = [Float](repeating: 0, count: rows.count * c.vocabSize)
        try logits.withUnsafeMutableBufferPointer { out in
            for (i, t) in rows.enumerated() {
                Ops.rmsNorm(ws.x + t * h, weight: outputNorm, eps: c.rmsNormEpsilon, count: h, into: ws.normed)
                try output.apply(ws.normed, into: out.baseAddress! + i * c.vocabSize, scratch: ws.scratch)
            }
        }
        return logits
    }

    private func attention(layer l: Int, tokens n: Int, start: Int, cache: KVCache, ws: Workspace) throws {
        let c = configuration
        let w = layers[l]
        let h = c.hiddenSize, hd = c.headDim, qd = c.queryDim, kvd = c.kvDim
        let group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()

        try cache.keys[l].withUnsafeMutableBufferPointer { keys in
            try cache.values[l].withUnsafeMutableBufferPointer { values in
                let kBase = keys.baseAddress!, vBase = values.baseAddress!
                // Projections, norms and rotary for every token; keys and values go into the cache.
                for t in 0..<n {
                    let pos = start + t
                    let q = ws.q + t * qd, k = kBase + pos * kvd, v = vBase + pos * kvd
                    Ops.rmsNorm(ws.x + t * h, weight: w.attentionNorm, eps: c.rmsNormEpsilon, count: h, into: ws.normed)
                    try w.query.apply(ws.normed, into: q, scratch: ws.scratch)
                    try w.key.apply(ws.normed, into: k, scratch: ws.scratch)
                    try w.value.apply(ws.normed, into: v, scratch: ws.scratch)
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
                }
                // Causal attention over the cache (each token sees positions up to its own).
                for t in 0..<n {
                    let pos = start + t
                    let first = c.slidingWindow.map { max(0, pos - $0 + 1) } ?? 0
                    let out = ws.attended + t * qd
                    for head in 0..<c.headCount {
                        let q = ws.q + t * qd + head * hd
                        let kvOffset = (head / group) * hd
                        var maxScore = -Float.infinity
                        for j in first...pos {
                            let s = MatVec.dot(q, kBase + j * kvd + kvOffset, count: hd) * scale
                            ws.scores[j] = s
                            maxScore = max(maxScore, s)
                        }
                        var sum: Float = 0
                        for j in first...pos {
                            let e = expf(ws.scores[j] - maxScore)
                            ws.scores[j] = e
                            sum += e
                        }
                        let o = out + head * hd
                        for d in 0..<hd { o[d] = 0 }
                        for j in first...pos {
                            let p = ws.scores[j] / sum
                            let vj = vBase + j * kvd + kvOffset
                            for d in 0..<hd { o[d] += p * vj[d] }
                        }
                    }
                }
            }
        }
        for t in 0..<n {
            try w.attentionOutput.apply(ws.attended + t * qd, into: ws.projected, scratch: ws.scratch)
            let x = ws.x + t * h
            for i in 0..<h { x[i] += ws.projected[i] }
        }
    }

    private func feedForward(layer l: Int, tokens n: Int, start: Int, ws: Workspace, observer: RoutingObserver?) throws {
        let c = configuration
        let w = layers[l]
        let h = c.hiddenSize
        for t in 0..<n {
            Ops.rmsNorm(ws.x + t * h, weight: w.ffnNorm, eps: c.rmsNormEpsilon, count: h, into: ws.ffnInput + t * h)
        }
        ws.moeOutput.initialize(repeating: 0, count: n * h)

        if let dense = w.dense {
            for t in 0..<n {
                try swiGLU(ws.ffnInput + t * h, gate: dense.gate, up: dense.up, down: dense.down, weight: 1, accumulate: ws.moeOutput + t * h, ws: ws)
            }
        } else if let routerWeights = w.router {
            // Route every token, then run each chosen expert once over all tokens that chose it.
            var assignments = [[(token: Int, weight: Float)]](repeating: [], count: c.expertCount)
            for t in 0..<n {
                try routerWeights.apply(ws.ffnInput + t * h, into: ws.routerLogits, scratch: ws.scratch)
                let choices = router.route(logits: UnsafeBufferPointer(start: ws.routerLogits, count: c.expertCount))
                observer?(l, start + t, choices)
                for choice in choices { assignments[choice.expert].append((t, choice.weight)) }
            }
            for e in 0..<c.expertCount where !assignments[e].isEmpty {
                try experts.withExpert(layer: l, expert: e) { expert in
                    let gate = Linear(weight: expert.gate, bias: nil)
                    let up = Linear(weight: expert.up, bias: nil)
                    let down = Linear(weight: expert.down, bias: nil)
                    for (t, weight) in assignments[e] {
                        try swiGLU(ws.ffnInput + t * h, gate: gate, up: up, down: down, weight: weight, accumulate: ws.moeOutput + t * h, ws: ws)
                    }
                }
            }
            if let shared = w.shared {
                for t in 0..<n {
                    var scale: Float = 1
                    if let sharedRouter = w.sharedRouter {
                        try sharedRouter.apply(ws.ffnInput + t * h, into: ws.routerLogits, scratch: ws.scratch)
                        scale = Ops.sigmoid(ws.routerLogits[0])
                    }
                    try swiGLU(ws.ffnInput + t * h, gate: shared.gate, up: shared.up, down: shared.down, weight: scale, accumulate: ws.moeOutput + t * h, ws: ws)
                }
            }
        }
        for i in 0..<(n * h) { ws.x[i] += ws.moeOutput[i] }
    }

    /// `accumulate += weight * down(silu(gate x) * up x)`.
    private func swiGLU(
        _ x: UnsafePointer<Float>, gate: Linear, up: Linear, down: Linear, weight: Float,
        accumulate: UnsafeMutablePointer<Float>, ws: Workspace
    ) throws {
        let size = gate.outputs
        try gate.apply(x, into: ws.gate, scratch: ws.scratch)
        try up.apply(x, into: ws.up, scratch: ws.scratch)
        for i in 0..<size { ws.gate[i] = Ops.silu(ws.gate[i]) * ws.up[i] }
        try down.apply(ws.gate, into: ws.projected, scratch: ws.scratch)
        for i in 0..<down.outputs { accumulate[i] += weight * ws.projected[i] }
    }
}

/// Scratch memory for one forward call, allocated once per call.
final class Workspace {
    let x, normed, ffnInput, moeOutput, q, attended, projected, gate, up, routerLogits, scratch, scores: UnsafeMutablePointer<Float>
    private var all: [UnsafeMutablePointer<Float>] = []

    init(configuration c: ModelConfiguration, tokens n: Int) {
        var all: [UnsafeMutablePointer<Float>] = []
        func make(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            all.append(p)
            return p
        }
        let h = c.hiddenSize
        let widest = max(h, c.queryDim, c.kvDim, c.expertFFNSize, c.sharedExpertFFNSize, c.denseFFNSize, c.vocabSize)
        x = make(n * h)
        normed = make(h)
        ffnInput = make(n * h)
        moeOutput = make(n * h)
        q = make(n * c.queryDim)
        attended = make(n * c.queryDim)
        projected = make(widest)
        gate = make(widest)
        up = make(widest)
        routerLogits = make(max(c.expertCount, 1))
        scratch = make(widest)
        scores = make(c.contextLength)
        self.all = all
    }

    deinit {
        for p in all { p.deallocate() }
    }
}
