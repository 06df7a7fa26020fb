import ExpertStore
import ModelFormats
import Quantization

/// One layer's feed-forward network: reads the normalized residual and adds its output to
/// `pass.workspace.ffnOutput` (zeroed by the caller, then added to the residual).
///
/// Each kind is a type conforming to this protocol that loads its own weights;
/// ``FeedForwardBlocks/make(layer:weights:experts:)`` picks the kind for a layer.
protocol FeedForwardBlock: Sendable {
    func forward(_ input: ActivationBatch, layer: Int, pass: ForwardPass) throws
}

/// Which feed-forward block each layer of a model uses.
enum FeedForwardBlocks {
    static func make(layer: Int, weights: WeightLoader, experts: any ExpertProvider) throws -> any FeedForwardBlock {
        let c = weights.configuration
        switch c.layerKinds[layer] {
        case .moe: return try MoEFeedForward(layer: layer, weights: weights, experts: experts)
        case .dense: return try DenseFeedForward(layer: layer, weights: weights)
        }
    }
}

/// The MLP of a dense layer: SwiGLU with every token weighted 1.
struct DenseFeedForward: FeedForwardBlock {
    let mlp: SwiGLU

    init(layer l: Int, weights: WeightLoader) throws {
        mlp = try weights.swiGLU(gate: .denseGate(l), up: .denseUp(l), down: .denseDown(l), size: weights.configuration.denseFFNSize)
    }

    func forward(_ input: ActivationBatch, layer: Int, pass: ForwardPass) throws {
        let n = pass.tokens
        try mlp.run(input: input, tokens: Array(0..<n), weights: Array(repeating: 1, count: n), pass: pass)
    }
}

/// `down(silu(gate x) * up x)`: dense MLPs, shared experts, and routed experts in prefill
/// (with GPT-OSS's biases on gate, up and down and its clamped activation, ``GatedActivation``).
struct SwiGLU: Sendable {
    let gate: Linear, up: Linear, down: Linear
    var activation = GatedActivation.swiGLU

    /// `ffnOutput[t] += weight_t * down(silu(gate x_t) * up x_t)` for the listed tokens of
    /// `input`, the tokens batched through each weight matrix.
    func run(input: ActivationBatch, tokens: [Int], weights: [Float], pass: ForwardPass,
             observe: ((ExpertActivations) -> Void)? = nil) throws {
        let ws = pass.workspace
        let h = input.width
        let size = gate.outputs
        let count = tokens.count
        // Gather the tokens into a contiguous batch (a no-op copy when they are all tokens).
        let gathered: ActivationBatch
        if tokens.count == input.tokens, tokens.enumerated().allSatisfy({ $0.offset == $0.element }) {
            gathered = input
        } else {
            gathered = ws.gathered.reset(tokens: count)
            for (i, t) in tokens.enumerated() { gathered.row(i).update(from: input.row(t), count: h) }
        }
        let g = ws.gateOutput.reserve(count * size), u = ws.upOutput.reserve(count * size)
        let hidden = ws.hidden(width: size).reset(tokens: count)
        let path = pass.kernels
        if Kernels.needsQuantizedInput(gate.matrix.type, path: path) || Kernels.needsQuantizedInput(up.matrix.type, path: path) {
            gathered.quantize(on: pass.pool)
        }
        // Gate and up in one pass over rows, SiLU·mul fused into the same pass.
        try pass.parallel(size, grain: 8) { range, worker in
            try Kernels.matmul(gate.matrix, rows: range, input: gathered, output: g, ldy: size, path: path, scratch: ws.scratch(worker))
            try Kernels.matmul(up.matrix, rows: range, input: gathered, output: u, ldy: size, path: path, scratch: ws.scratch(worker))
            for t in 0..<count {
                let out = hidden.row(t)
                if let gb = gate.bias, let ub = up.bias {
                    for r in range { out[r] = activation(g[t * size + r] + gb[r], u[t * size + r] + ub[r]) }
                } else {
                    for r in range { out[r] = activation(g[t * size + r], u[t * size + r]) }
                }
            }
        }
        if let observe {
            observe(ExpertActivations(layer: -1, expert: -1, tokens: count, input: gathered.values, gate: g, up: u, hidden: hidden.values,
                                      routerWeights: weights))
        }
        let y = ws.downOutput.reserve(count * h)
        try pass.project([down], input: hidden, outputs: [y])
        let output = ws.ffnOutput.pointer
        for (i, t) in tokens.enumerated() {
            let out = output + t * h, src = y + i * h
            let weight = weights[i]
            for r in 0..<h { out[r] += weight * src[r] }
        }
    }
}
