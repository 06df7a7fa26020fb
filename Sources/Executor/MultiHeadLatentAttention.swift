import Foundation
import ModelFormats
import Quantization

/// DeepSeek's multi-head latent attention (DeepSeek-V2, V2-Lite, V3) with the compressed KV cache.
///
/// Per token: queries `q = q_b(rmsnorm(q_a x))` (or `q_proj x` without `q_lora_rank`), split per
/// head into a part without position (`nope`) and a rotary part (`rope`); `kv_a x` gives the latent
/// `c = rmsnorm(c_kv)` (`kvRank`) and one rotary key `k_pe` shared by every head. The cache keeps
/// only `[c, rope(k_pe)]` per position (``ModelConfiguration/LatentAttention/cachedWidth`` floats).
///
/// `kv_b` expands the latent into each head's key (`W_UK c`) and value (`W_UV c`). Attention never
/// builds them: the key part is absorbed into the query (`q_nope · W_UK c = (W_UKᵀ q_nope) · c`)
/// and the value part applied after attention (`Σ p_j W_UV c_j = W_UV Σ p_j c_j`), so every pass
/// (prefill and decode alike, so incremental decoding stays bit-identical) attends in latent
/// space: score_j = (q_lat · c_j + q_pe · k_pe_j) · scale, o_lat = Σ softmax_j c_j, out = W_UV o_lat.
///
/// `W_UKᵀ` and `W_UV` are kept in f32 per head (from the checkpoint's `kv_b_proj`, or llama.cpp's
/// split `attn_k_b`/`attn_v_b`, which already store `W_UKᵀ`).
struct MultiHeadLatentAttention: AttentionBlock {
    let configuration: ModelConfiguration
    let shape: ModelConfiguration.LatentAttention
    /// `q_a`, its norm and `q_b` (with `q_lora_rank`), or `q_proj`.
    let queryA: Linear?, queryANorm: [Float]?, queryB: Linear
    let kvA: Linear, kvANorm: [Float]
    /// Per head, `kvRank` rows of `nope` floats (`W_UKᵀ`).
    let absorbedKey: [Float]
    /// Per head, `valueHeadDim` rows of `kvRank` floats (`W_UV`).
    let absorbedValue: [Float]
    let output: Linear
    let rope: Rope

    init(layer l: Int, weights: WeightLoader) throws {
        let c = weights.configuration
        guard let m = c.latentAttention else {
            throw ModelFormatError.invalidConfig(path: weights.source.path, reason: "latent attention without its shape")
        }
        configuration = c
        shape = m
        rope = Rope(configuration: c)
        let h = c.hiddenSize, heads = c.headCount
        if m.queryRank > 0 {
            queryA = try weights.linear(.queryA(l), inputs: h, outputs: m.queryRank)
            queryANorm = try weights.vector(.queryANorm(l), m.queryRank)
            queryB = try weights.linear(.queryB(l), inputs: m.queryRank, outputs: c.queryDim)
        } else {
            queryA = nil
            queryANorm = nil
            queryB = try weights.linear(.query(l), inputs: h, outputs: c.queryDim)
        }
        kvA = try weights.linear(.kvA(l), inputs: h, outputs: m.cachedWidth)
        kvANorm = try weights.vector(.kvANorm(l), m.kvRank)
        output = try weights.linear(.attentionOutput(l), inputs: c.attentionOutputDim, outputs: h)

        let r = m.kvRank, nope = m.nopeHeadDim, vd = m.valueHeadDim
        var key = [Float](repeating: 0, count: heads * r * nope)
        var value = [Float](repeating: 0, count: heads * vd * r)
        if let kb = try weights.source.optional(.keyB(l), shape: [nope, r, heads]),
           let vb = try weights.source.optional(.valueB(l), shape: [r, vd, heads]) {
            // llama.cpp's split: k_b is W_UKᵀ per head already, v_b is W_UV per head.
            key = try kb.toFloats()
            value = try vb.toFloats()
        } else {
            // kv_b_proj: per head, `nope` key rows then `vd` value rows, each of `kvRank` floats.
            let kvB = try weights.source.require(.kvB(l), shape: [r, heads * (nope + vd)]).toFloats()
            for head in 0..<heads {
                let base = head * (nope + vd) * r
                for i in 0..<nope {
                    for j in 0..<r { key[(head * r + j) * nope + i] = kvB[base + i * r + j] }
                }
                for i in 0..<vd {
                    for j in 0..<r { value[(head * vd + i) * r + j] = kvB[base + (nope + i) * r + j] }
                }
            }
        }
        absorbedKey = key
        absorbedValue = value
    }

    func forward(_ input: ActivationBatch, layer l: Int, cache: KVCache.Storage, pass: ForwardPass, output out: UnsafeMutablePointer<Float>) throws {
        let c = configuration, m = shape
        let n = pass.tokens, start = pass.start, ws = pass.workspace
        let qd = c.queryDim, qkd = c.headDim, kvd = c.kvDim
        let qs = ws.query.pointer, kv = ws.key.pointer
        if let queryA, let queryANorm {
            let low = ws.hidden(width: m.queryRank).reset(tokens: n)
            try pass.project([queryA, kvA], input: input, outputs: [low.row(0), kv])
            for t in 0..<n { Ops.rmsNorm(low.row(t), weight: queryANorm, eps: m.normEpsilon, count: m.queryRank, into: low.row(t)) }
            try pass.project([queryB], input: low, outputs: [qs])
        } else {
            try pass.project([queryB, kvA], input: input, outputs: [qs, kv])
        }
        for t in 0..<n {
            let pos = start + t
            let row = kv + t * kvd
            Ops.rmsNorm(row, weight: kvANorm, eps: m.normEpsilon, count: m.kvRank, into: row)
            rope.apply(row + m.kvRank, heads: 1, headDim: m.ropeHeadDim, position: pos)
            rope.apply(qs + t * qd + m.nopeHeadDim, heads: c.headCount, headDim: qkd, position: pos)
            cache.store(layer: l, position: pos, keys: row)
        }
        let attended = ws.attended.reset(tokens: n)
        attend(queries: qs, layer: l, cache: cache, pass: pass, into: attended)
        try pass.project([output], input: attended, outputs: [out])
    }

    /// One (token, head) per work item: absorb the query, online softmax over the cached latents,
    /// then expand the attended latent with `W_UV`.
    private func attend(queries: UnsafeMutablePointer<Float>, layer l: Int, cache: KVCache.Storage, pass: ForwardPass, into attended: ActivationBatch) {
        let c = configuration, m = shape
        let heads = c.headCount, r = m.kvRank, nope = m.nopeHeadDim, vd = m.valueHeadDim
        let qd = c.queryDim, qkd = c.headDim, start = pass.start
        let scale = m.softmaxScaleFactor / Float(qkd).squareRoot()
        let latentQueries = pass.workspace.latentQuery.reserve(pass.tokens * heads * r)
        let latentOutputs = pass.workspace.latentOutput.reserve(pass.tokens * heads * r)
        absorbedKey.withUnsafeBufferPointer { wk in
            absorbedValue.withUnsafeBufferPointer { wv in
                let wk = wk.baseAddress!, wv = wv.baseAddress!
                pass.pool.parallelFor(pass.tokens * heads) { range, _ in
                    for item in range {
                        let t = item / heads, head = item % heads
                        let pos = start + t
                        let q = queries + t * qd + head * qkd
                        let qLatent = latentQueries + item * r, oLatent = latentOutputs + item * r
                        for j in 0..<r { qLatent[j] = Kernels.dot(wk + (head * r + j) * nope, q, count: nope) }
                        oLatent.initialize(repeating: 0, count: r)
                        var maximum = -Float.infinity, sum: Float = 0
                        for p in 0...pos {
                            let s = (cache.keyDot(layer: l, position: p, offset: 0, qLatent, count: r)
                                + cache.keyDot(layer: l, position: p, offset: r, q + nope, count: m.ropeHeadDim)) * scale
                            var weight: Float = 1
                            if s > maximum {
                                let correction = expf(maximum - s)
                                sum *= correction
                                Kernels.scale(correction, oLatent, count: r)
                                maximum = s
                            } else {
                                weight = expf(s - maximum)
                            }
                            sum += weight
                            cache.addKey(layer: l, position: p, offset: 0, weight: weight, into: oLatent, count: r)
                        }
                        Kernels.scale(1 / sum, oLatent, count: r)
                        let o = attended.row(t) + head * vd
                        for i in 0..<vd { o[i] = Kernels.dot(wv + (head * vd + i) * r, oLatent, count: r) }
                    }
                }
            }
        }
    }
}
