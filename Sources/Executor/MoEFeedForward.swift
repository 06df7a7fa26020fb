import ExpertStore
import ModelFormats
import Quantization
import Router

/// A mixture-of-experts layer: the gate's logits become expert choices by the family's rule
/// (``Router``), the chosen experts come from the ``ExpertProvider``, and an optional shared
/// expert (optionally scaled by a sigmoid gate) runs on every token.
///
/// A decode step (one token) runs all active experts in one fused pass
/// (``runActiveExperts(_:routerWeights:input:pass:)``); prefill groups the tokens routed to each
/// expert and runs them through it together, one expert after the other with the next reads in
/// flight (``ExpertWave``).
struct MoEFeedForward: FeedForwardBlock {
    /// The gate: `expertCount` logits per token.
    let gate: Linear
    let router: Router
    let experts: any ExpertProvider
    let shared: SwiGLU?
    /// The shared expert's gate: one logit per token, scaled by sigmoid.
    let sharedGate: Linear?
    let hiddenSize: Int
    /// GPT-OSS: per-expert biases and the clamped activation (ExpertActivation.swift).
    let biases: ExpertBiases?
    let activation: GatedActivation

    init(layer l: Int, weights: WeightLoader, experts: any ExpertProvider) throws {
        let c = weights.configuration
        hiddenSize = c.hiddenSize
        router = Router(configuration: c, selectionBias: c.routing.usesSelectionBias ? try weights.vector(.expertSelectionBias(l), c.expertCount) : nil)
        self.experts = experts
        gate = try weights.linear(.router(l), inputs: c.hiddenSize, outputs: c.expertCount, bias: c.expertBiases ? .routerBias(l) : nil)
        if c.expertBiases, gate.bias == nil { throw ModelFormatError.missingTensor(weights.fileName(of: .routerBias(l)), model: weights.source.path) }
        biases = c.expertBiases ? try ExpertBiases(layer: l, weights: weights) : nil
        activation = GatedActivation(clamped: c.expertActivation)
        shared = c.hasSharedExpert
            ? try weights.swiGLU(gate: .sharedGate(l), up: .sharedUp(l), down: .sharedDown(l), size: c.sharedExpertFFNSize) : nil
        sharedGate = c.hasSharedExpert && c.sharedExpertGated
            ? try weights.linear(.sharedExpertRouter(l), inputs: c.hiddenSize, outputs: 1) : nil
    }

    func forward(_ input: ActivationBatch, layer l: Int, pass: ForwardPass) throws {
        let n = pass.tokens
        let expertCount = router.expertCount
        let logits = pass.workspace.routerLogits.pointer
        // Router logits in f32 for every token, then the family's rule.
        try pass.project([gate], input: input, outputs: [logits])
        var assignments = [[(token: Int, weight: Float)]](repeating: [], count: expertCount)
        for t in 0..<n {
            let choices = router.route(logits: UnsafeBufferPointer(start: logits + t * expertCount, count: expertCount))
            pass.observer?(l, pass.start + t, choices)
            for choice in choices { assignments[choice.expert].append((t, choice.weight)) }
        }
        let active = (0..<expertCount).filter { !assignments[$0].isEmpty }
        if n == 1 && pass.expertActivations == nil {
            pass.prefetch.predictAhead(layer: l, chosen: active, pass: pass)
            try experts.withTokenExperts(layer: l, experts: active) { weights in
                try runActiveExperts(weights, ids: active, routerWeights: active.map { assignments[$0][0].weight }, input: input, pass: pass)
            }
        } else {
            // Prefill in waves: each expert once, for all its tokens, next reads in flight.
            try ExpertWave(layer: l, experts: active, provider: experts, readAhead: pass.readAhead).run(provider: experts) { e, expert in
                let mlp = SwiGLU(gate: try Linear(expert.gate, bias: biases?.gate(of: e)), up: try Linear(expert.up, bias: biases?.up(of: e)),
                                 down: try Linear(expert.down, bias: biases?.down(of: e)), activation: activation)
                try mlp.run(input: input, tokens: assignments[e].map(\.token), weights: assignments[e].map(\.weight), pass: pass,
                            observe: pass.expertActivations.map { observer in { var a = $0; a.layer = l; a.expert = e; observer(a) } })
            }
        }
        if let shared {
            var scales = [Float](repeating: 1, count: n)
            if let sharedGate {
                try pass.project([sharedGate], input: input, outputs: [logits])
                for t in 0..<n { scales[t] = Ops.sigmoid(logits[t]) }
            }
            try shared.run(input: input, tokens: Array(0..<n), weights: scales, pass: pass)
        }
    }

    /// One token through all its active experts (decode): gate·up·SiLU for every expert in one
    /// parallel pass, then one pass over the output rows summing the weighted down projections
    /// in expert order. Arithmetic per row is identical to ``SwiGLU/run`` so decode and prefill agree.
    private func runActiveExperts(_ experts: [ExpertWeights], ids: [Int], routerWeights: [Float], input: ActivationBatch, pass: ForwardPass) throws {
        let h = hiddenSize
        let k = experts.count
        guard k > 0 else { return }
        let ws = pass.workspace
        let size = experts[0].gate.rowCount
        let gates = try experts.map { try WeightMatrix(view: $0.gate) }
        let ups = try experts.map { try WeightMatrix(view: $0.up) }
        let downs = try experts.map { try WeightMatrix(view: $0.down) }
        let path = pass.kernels
        if gates.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) || ups.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) {
            input.quantize(on: pass.pool)
        }
        let g = ws.gateOutput.reserve(k * size), u = ws.upOutput.reserve(k * size)
        let hidden = ws.hidden(width: size).reset(tokens: k)
        try pass.parallel(k * size, grain: 8) { range, worker in
            for e in 0..<k {
                let lo = max(range.lowerBound, e * size) - e * size, hi = min(range.upperBound, (e + 1) * size) - e * size
                guard lo < hi else { continue }
                try Kernels.matmul(gates[e], rows: lo..<hi, input: input, tokens: 0..<1, output: g + e * size, ldy: size, path: path, scratch: ws.scratch(worker))
                try Kernels.matmul(ups[e], rows: lo..<hi, input: input, tokens: 0..<1, output: u + e * size, ldy: size, path: path, scratch: ws.scratch(worker))
                let out = hidden.row(e)
                if let biases {
                    let gb = ids[e] * size, ub = ids[e] * size
                    for r in lo..<hi { out[r] = activation(g[e * size + r] + biases.gate[gb + r], u[e * size + r] + biases.up[ub + r]) }
                } else {
                    for r in lo..<hi { out[r] = activation(g[e * size + r], u[e * size + r]) }
                }
            }
        }
        if downs.contains(where: { Kernels.needsQuantizedInput($0.type, path: path) }) { hidden.quantize(on: pass.pool) }
        let y = ws.downOutput.reserve(k * h)
        let out = ws.ffnOutput.pointer
        try pass.parallel(h, grain: 16) { range, worker in
            for e in 0..<k {
                try Kernels.matmul(downs[e], rows: range, input: hidden, tokens: e..<(e + 1), output: y + e * h, ldy: h, path: path, scratch: ws.scratch(worker))
            }
            if let biases {
                for e in 0..<k { for r in range { y[e * h + r] += biases.down[ids[e] * h + r] } }
            }
            for r in range {
                for e in 0..<k { out[r] += routerWeights[e] * y[e * h + r] }
            }
        }
    }
}
