import Foundation
import ModelFormats
import Quantization

/// Grouped-query attention (every supported family): Q, K, V projections (optional biases,
/// optional ±clip), optional RMSNorm of queries and keys (per head or over the whole
/// projection), RoPE, causal attention over the KV cache (within a sliding window on the layers
/// the configuration slides) with an online softmax, optional learned sinks (GPT-OSS: one logit
/// per head joins the softmax's denominator), and the output projection (optional bias).
struct GroupedQueryAttention: AttentionBlock {
    let query: Linear, key: Linear, value: Linear, output: Linear
    let queryNorm: [Float]?, keyNorm: [Float]?
    /// One logit per query head (``ModelConfiguration/attentionSinks``).
    let sinks: [Float]?
    /// Keys older than this many positions are not seen (this layer slides).
    let window: Int?
    let configuration: ModelConfiguration
    let rope: Rope

    init(layer l: Int, weights: WeightLoader) throws {
        let c = weights.configuration
        let h = c.hiddenSize
        configuration = c
        rope = Rope(configuration: c)
        query = try weights.linear(.query(l), inputs: h, outputs: c.queryDim, bias: .queryBias(l))
        key = try weights.linear(.key(l), inputs: h, outputs: c.kvDim, bias: .keyBias(l))
        value = try weights.linear(.value(l), inputs: h, outputs: c.kvDim, bias: .valueBias(l))
        if c.attentionBias, query.bias == nil || key.bias == nil || value.bias == nil {
            throw ModelFormatError.missingTensor(weights.fileName(of: .queryBias(l)) + " (or its key/value twin)", model: weights.source.path)
        }
        switch c.qkNorm {
        case .none:
            queryNorm = nil
            keyNorm = nil
        case .perHead:
            queryNorm = try weights.vector(.queryNorm(l), c.headDim)
            keyNorm = try weights.vector(.keyNorm(l), c.headDim)
        case .wholeProjection:
            queryNorm = try weights.vector(.queryNorm(l), c.queryDim)
            keyNorm = try weights.vector(.keyNorm(l), c.kvDim)
        }
        output = try weights.linear(.attentionOutput(l), inputs: c.queryDim, outputs: h, bias: c.attentionOutputBias ? .attentionOutputBias(l) : nil)
        if c.attentionOutputBias, output.bias == nil {
            throw ModelFormatError.missingTensor(weights.fileName(of: .attentionOutputBias(l)), model: weights.source.path)
        }
        sinks = c.attentionSinks ? try weights.vector(.attentionSinks(l), c.headCount) : nil
        window = c.isSliding(layer: l) ? c.slidingWindow : nil
    }

    func forward(_ input: ActivationBatch, layer l: Int, cache: KVCache.Storage, pass: ForwardPass, output out: UnsafeMutablePointer<Float>) throws {
        let c = configuration
        let n = pass.tokens, start = pass.start
        let hd = c.headDim, qd = c.queryDim, kvd = c.kvDim
        let ws = pass.workspace
        let qs = ws.query.pointer, ks = ws.key.pointer, vs = ws.value.pointer
        try pass.project([query, key, value], input: input, outputs: [qs, ks, vs])

        for t in 0..<n {
            let pos = start + t
            let q = qs + t * qd, k = ks + t * kvd, v = vs + t * kvd
            if let clip = c.clipQKV {
                for i in 0..<qd { q[i] = min(max(q[i], -clip), clip) }
                for i in 0..<kvd {
                    k[i] = min(max(k[i], -clip), clip)
                    v[i] = min(max(v[i], -clip), clip)
                }
            }
            if let qn = queryNorm, let kn = keyNorm {
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

        let attended = ws.attended.reset(tokens: n)
        attend(queries: qs, layer: l, cache: cache, pass: pass, into: attended)
        try pass.project([output], input: attended, outputs: [out])
    }

    /// Fused attention: one pass over the cache per (token, kv head) with an online softmax;
    /// the query heads sharing a kv head read each key and value once.
    private func attend(queries: UnsafeMutablePointer<Float>, layer l: Int, cache: KVCache.Storage, pass: ForwardPass, into attended: ActivationBatch) {
        let c = configuration
        let start = pass.start, ws = pass.workspace
        let hd = c.headDim, qd = c.queryDim
        let group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(hd).squareRoot()
        pass.pool.parallelFor(pass.tokens * c.kvHeadCount) { range, worker in
            let m = ws.softmaxState(worker)
            for item in range {
                let t = item / c.kvHeadCount, kvHead = item % c.kvHeadCount
                let pos = start + t
                let first = window.map { max(0, pos - $0 + 1) } ?? 0
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
                        let s = cache.keyDot(layer: l, position: j, offset: offset, queries + t * qd + head * hd, count: hd) * scale
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
                    let out = attended.row(t) + (kvHead * group + g) * hd
                    if let sinks {
                        // The sink is one more softmax term with no value: it only adds to the sum.
                        let s = sinks[kvHead * group + g]
                        if s > m.maxima[g] {
                            let correction = expf(m.maxima[g] - s)
                            m.sums[g] = m.sums[g] * correction + 1
                            Kernels.scale(correction, out, count: hd)
                        } else {
                            m.sums[g] += expf(s - m.maxima[g])
                        }
                    }
                    Kernels.scale(1 / m.sums[g], out, count: hd)
                }
            }
        }
    }
}
