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
