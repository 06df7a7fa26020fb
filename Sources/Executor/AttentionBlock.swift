import ModelFormats
import Quantization

/// One layer's attention: reads the normalized residual, writes the layer's contribution to
/// the residual stream, and keeps what later positions need in the KV cache.
///
/// Each variant is a type conforming to this protocol in its own file that loads its own
/// weights; ``AttentionBlocks/make(layer:weights:)`` picks the variant for a layer.
protocol AttentionBlock: Sendable {
    /// Loads layer `layer`'s attention weights; throws ``ModelFormatError`` if one is missing
    /// or has the wrong shape.
    init(layer: Int, weights: WeightLoader) throws

    /// Runs the pass's tokens (`input`: one normalized row per token, positions
    /// `pass.start...`) through the layer: appends their keys and values to `cache`, attends
    /// over every cached position the variant sees, and writes `hiddenSize` floats per token to
    /// `output` (the caller adds them to the residual).
    func forward(_ input: ActivationBatch, layer: Int, cache: KVCache.Storage, pass: ForwardPass, output: UnsafeMutablePointer<Float>) throws
}

/// Which attention block each layer of a model uses.
enum AttentionBlocks {
    /// The block of `layer`, chosen from the configuration. A new variant adds one line here,
    /// before the default, keyed on the configuration field that selects it.
    static func make(layer: Int, weights: WeightLoader) throws -> any AttentionBlock {
        if weights.configuration.latentAttention != nil { return try MultiHeadLatentAttention(layer: layer, weights: weights) }
        return try GroupedQueryAttention(layer: layer, weights: weights)
    }
}
