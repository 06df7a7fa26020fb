import Foundation
import ModelFormats
import Quantization

enum Ops {
    /// `out = x / sqrt(mean(x²) + eps) * weight`, as transformers' RMSNorm computes it in f32.
    /// `out` may be `x`.
    static func rmsNorm(_ x: UnsafePointer<Float>, weight: [Float], eps: Float, count: Int, into out: UnsafeMutablePointer<Float>) {
        var sumSquares: Float = 0
        for i in 0..<count { sumSquares += x[i] * x[i] }
        let scale = 1 / (sumSquares / Float(count) + eps).squareRoot()
        for i in 0..<count { out[i] = weight[i] * (x[i] * scale) }
    }

    @inline(__always) static func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }
    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
}

/// Rotary position embedding tables.
struct Rope {
    let dimensions: Int
    let style: ModelConfiguration.RopeStyle
    let inverseFrequencies: [Float]

    init(configuration c: ModelConfiguration) {
        dimensions = c.ropeDimensions
        style = c.ropeStyle
        let half = c.ropeDimensions / 2
        // transformers: 1 / base^(arange(0, d, 2) / d), in f32.
        inverseFrequencies = (0..<half).map { i in
            Float(1.0 / pow(c.ropeTheta, Double(2 * i) / Double(c.ropeDimensions)))
        }
    }

    /// Rotates every head of `x` (heads × headDim, contiguous) in place for `position`.
    func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int) {
        let half = dimensions / 2
        var cosines = [Float](repeating: 0, count: half)
        var sines = [Float](repeating: 0, count: half)
        for i in 0..<half {
            let angle = Float(position) * inverseFrequencies[i]
            cosines[i] = cosf(angle)
            sines[i] = sinf(angle)
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
