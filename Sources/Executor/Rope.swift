import Foundation
import ModelFormats

/// Rotary position embeddings: the inverse frequency of each rotated pair and the factor on
/// cos/sin, computed once per model as transformers' `modeling_rope_utils.py` computes them
/// (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
/// `_compute_yarn_parameters`, `_compute_llama3_parameters`), then applied per position.
///
/// The arithmetic is done in f64 and rounded to f32 once per frequency (transformers works in
/// f32 throughout; the two agree to an ulp or two, far inside the 1e-4 logit bar). The angle
/// `position · frequency` is an f32 product, as in transformers' `inv_freq @ position_ids`.
///
/// Other attention blocks (DeepSeek's decoupled RoPE on a slice of each head) use
/// ``init(theta:dimensions:style:scaling:contextLength:)`` and ``apply(_:heads:headDim:position:)``
/// with `headDim` as the stride between heads; DeepSeek's extra softmax factor is
/// ``ModelConfiguration/RopeScaling/softmaxScaleMultiplier``.
public struct Rope: Sendable {
    /// Rotated dimensions of each head (the leading ones).
    public let dimensions: Int
    public let style: ModelConfiguration.RopeStyle
    /// One per rotated pair, `dimensions / 2` of them.
    public let inverseFrequencies: [Float]
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    public let attentionFactor: Float

    public init(configuration c: ModelConfiguration) {
        self.init(theta: c.ropeTheta, dimensions: c.ropeDimensions, style: c.ropeStyle, scaling: c.ropeScaling, contextLength: c.contextLength)
    }

    /// - Parameter contextLength: the model's context, YaRN's original context when the
    ///   scaling names none (transformers' fallback to `max_position_embeddings`).
    public init(theta: Double, dimensions: Int, style: ModelConfiguration.RopeStyle, scaling: ModelConfiguration.RopeScaling?, contextLength: Int) {
        self.dimensions = dimensions
        self.style = style
        let frequencies = Rope.frequencies(theta: theta, dimensions: dimensions, scaling: scaling, contextLength: contextLength)
        inverseFrequencies = frequencies.map { Float($0) }
        attentionFactor = Float(scaling?.resolvedAttentionFactor ?? 1)
    }

    /// The inverse frequencies in f64.
    static func frequencies(theta: Double, dimensions d: Int, scaling: ModelConfiguration.RopeScaling?, contextLength: Int) -> [Double] {
        let half = d / 2
        // Default: 1 / base^(2i / d).
        let base = (0..<half).map { i in 1.0 / pow(theta, Double(2 * i) / Double(d)) }
        guard let s = scaling else { return base }
        switch s.kind {
        case .linear:
            return base.map { $0 / s.factor }
        case .yarn:
            let original = Double(s.originalContextLength ?? contextLength)
            // Inverse of "dimension i rotates n times over the original context".
            func correctionDimension(_ rotations: Double) -> Double {
                Double(d) * log(original / (rotations * 2 * Double.pi)) / (2 * log(theta))
            }
            var low = correctionDimension(s.betaFast), high = correctionDimension(s.betaSlow)
            if s.truncate {
                low = low.rounded(.down)
                high = high.rounded(.up)
            }
            low = max(low, 0)
            high = min(high, Double(d - 1))
            if low == high { high += 0.001 }  // transformers' guard against a zero-width ramp
            return base.enumerated().map { i, extrapolated in
                let ramp = min(max((Double(i) - low) / (high - low), 0), 1)
                // The share of the extrapolated (unscaled) frequency; llama.cpp's ext_factor scales it.
                let extrapolation = (1 - ramp) * s.extrapolationFactor
                return extrapolated / s.factor * (1 - extrapolation) + extrapolated * extrapolation
            }
        case .llama3:
            let original = Double(s.originalContextLength ?? contextLength)
            let lowFactor = s.lowFrequencyFactor ?? 1, highFactor = s.highFrequencyFactor ?? 4
            let lowWavelength = original / lowFactor, highWavelength = original / highFactor
            return base.map { f in
                let wavelength = 2 * Double.pi / f
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return f / s.factor }
                let smooth = (original / wavelength - lowFactor) / (highFactor - lowFactor)
                return (1 - smooth) * f / s.factor + smooth * f
            }
        }
    }

    /// Rotates the leading ``dimensions`` of every head of `x` (`heads` heads, `headDim` floats
    /// apart) in place for `position`.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int) {
        let half = dimensions / 2
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        for i in 0..<half {
            let angle = Float(position) * inverseFrequencies[i]
            cosines[i] = cosf(angle)
            sines[i] = sinf(angle)
            if attentionFactor != 1 {
                cosines[i] *= attentionFactor
                sines[i] *= attentionFactor
            }
        }
        for h in 0..<heads {
            let head = x + h * headDim
            for i in 0..<half {
                let (a, b) = style == .halfSplit ? (i, i + half) : (2 * i, 2 * i + 1)
                let x1 = head[a], x2 = head[b]
                head[a] = x1 * cosines[i] - x2 * sines[i]
                head[b] = x2 * cosines[i] + x1 * sines[i]
            }
        }
    }
}
