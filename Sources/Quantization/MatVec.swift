/// Matrix-vector products over weights of any computable type, and the f32 dot product under
/// them. These are the scalar-reference kernels: correct for every type in the traits table,
/// used as the yardstick for faster paths.
public enum MatVec {
    /// Dot product of two float vectors (8 partial sums; the order differs from a serial sum
    /// by rounding only).
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= count {
            let va = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            let vb = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += va * vb
            i += 8
        }
        var sum = acc.sum()
        while i < count {
            // Weights may come from a file at any alignment: load without assuming it.
            sum += UnsafeRawPointer(a + i).loadUnaligned(as: Float.self) * UnsafeRawPointer(b + i).loadUnaligned(as: Float.self)
            i += 1
        }
        return sum
    }

    /// `y[r] = W[r] · x` for rows `rows` of a row-major weight matrix of type `type` with
    /// `columns` elements per row.
    ///
    /// - Parameters:
    ///   - weights: the first byte of row 0.
    ///   - scratch: room for `columns` floats (used to dequantize one row at a time).
    public static func apply(
        type: GGMLType, weights: UnsafeRawPointer, columns: Int, rows: Range<Int>,
        x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) throws {
        let traits = type.traits
        guard let rowBytes = traits.byteCount(elements: columns) else {
            throw QuantizationError.partialBlock(type, elements: columns)
        }
        if type == .f32 {
            for r in rows {
                y[r] = dot((weights + r * rowBytes).assumingMemoryBound(to: Float.self), x, count: columns)
            }
            return
        }
        guard let dequantize = traits.dequantize else { throw QuantizationError.unsupported(type, operation: "matrix-vector product") }
        for r in rows {
            dequantize(weights + r * rowBytes, scratch, columns)
            y[r] = dot(scratch, x, count: columns)
        }
    }
}
