import ModelFormats
import Quantization

/// The gated activation of an expert or MLP: SwiGLU's `silu(gate) · up`, or GPT-OSS's clamped
/// variant `(clamp(up, ±limit) + 1) · g · sigmoid(alpha · g)` with `g = min(gate, limit)`, in
/// the operation order of transformers' `GptOssExperts` (and llama.cpp's `swiglu_oai`).
struct GatedActivation: Sendable {
    let clamped: ModelConfiguration.ClampedSwiGLU?

    static let swiGLU = GatedActivation(clamped: nil)

    @inline(__always) func callAsFunction(_ gate: Float, _ up: Float) -> Float {
        guard let c = clamped else { return Ops.silu(gate) * up }
        let g = min(gate, c.limit)
        let u = min(max(up, -c.limit), c.limit)
        return (u + 1) * (g * Ops.sigmoid(g * c.alpha))
    }
}

/// Every expert's gate, up and down biases of one MoE layer (GPT-OSS), kept resident: they are
/// `(2 · ffn + hidden)` floats per expert, small next to the expert's matrices, and stored per
/// layer in both formats (GGUF `ffn_{gate,up,down}_exps.bias`, HF `gate_up_proj_bias`/`down_proj_bias`).
struct ExpertBiases: Sendable {
    let gate: [Float], up: [Float], down: [Float]
    let ffn: Int, hidden: Int

    init(layer l: Int, weights: WeightLoader) throws {
        let c = weights.configuration
        ffn = c.expertFFNSize
        hidden = c.hiddenSize
        gate = try weights.vector(.expertGateBias(l), shape: [ffn, c.expertCount])
        up = try weights.vector(.expertUpBias(l), shape: [ffn, c.expertCount])
        down = try weights.vector(.expertDownBias(l), shape: [hidden, c.expertCount])
    }

    func gate(of e: Int) -> [Float] { Array(gate[(e * ffn)..<((e + 1) * ffn)]) }
    func up(of e: Int) -> [Float] { Array(up[(e * ffn)..<((e + 1) * ffn)]) }
    func down(of e: Int) -> [Float] { Array(down[(e * hidden)..<((e + 1) * hidden)]) }
}
