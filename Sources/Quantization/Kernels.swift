import CKernels

/// A batch of activation vectors (`tokens` × `width` floats) and, on demand, their 8-bit
/// quantization in the format the quantized kernels take (see CKernels/moe_kernels.h).
///
/// Quantize once, feed several weight matrices: the Q, K and V projections share one input,
/// and so do an expert's gate and up projections.
///
/// Not `Sendable`: the batch is mutable scratch owned by one forward pass. Workers of a
/// parallel region may read it (``Kernels/matmul(_:rows:input:tokens:output:ldy:path:scratch:)``)
/// and write disjoint elements of ``values`` while the owner waits for the region to end; `reset`,
/// `invalidate` and `quantize` belong to the owner, outside parallel regions.
public final class ActivationBatch {
    public let width: Int
    public let capacity: Int
    public private(set) var tokens: Int
    /// `capacity * width` floats, token-major.
    public let values: UnsafeMutablePointer<Float>
    let q: UnsafeMutablePointer<Int8>
    let d: UnsafeMutablePointer<Float>
    let s16: UnsafeMutablePointer<Float>
    /// The q8_K form (one scale per 256 values, int16 sums of 16) for the K-quant kernels;
    /// allocated only when `width` is a multiple of 256.
    let qk: UnsafeMutablePointer<Int8>?
    let dk: UnsafeMutablePointer<Float>?
    let bsums: UnsafeMutablePointer<Int16>?
    let sums: UnsafeMutablePointer<Float>?
    private var quantizedTokens = 0

    public init(width: Int, capacity: Int) {
        self.width = width
        self.capacity = max(capacity, 1)
        tokens = 0
        let n = width * self.capacity
        values = .allocate(capacity: n)
        values.initialize(repeating: 0, count: n)
        q = .allocate(capacity: n)
        d = .allocate(capacity: max(n / 32, 1))
        s16 = .allocate(capacity: max(n / 16, 1))
        if width > 0, width % 256 == 0 {
            qk = .allocate(capacity: n)
            dk = .allocate(capacity: n / 256)
            bsums = .allocate(capacity: n / 16)
            sums = .allocate(capacity: n / 16)
        } else {
            qk = nil
            dk = nil
            bsums = nil
            sums = nil
        }
    }

    deinit {
        values.deallocate()
        q.deallocate()
        d.deallocate()
        s16.deallocate()
        qk?.deallocate()
        dk?.deallocate()
        bsums?.deallocate()
        sums?.deallocate()
    }

    /// Declares how many tokens the batch holds now; their quantization is stale.
    public func reset(tokens: Int) {
        precondition(tokens <= capacity, "activation batch holds at most \(capacity) tokens")
        self.tokens = tokens
        quantizedTokens = 0
    }

    /// Marks the float values as changed.
    public func invalidate() { quantizedTokens = 0 }

    /// Whether ``quantize()`` is up to date.
    public var isQuantized: Bool { quantizedTokens == tokens }

    public func row(_ token: Int) -> UnsafeMutablePointer<Float> { values + token * width }

    /// Whether quantized kernels can take this width (whole 32-element blocks).
    public var isQuantizable: Bool { width % 32 == 0 }

    /// Quantizes every token (once until the values change), in both activation formats
    /// where the width allows the second (q8_K, for the K-quant kernels).
    public func quantize() {
        guard !isQuantized, isQuantizable else { return }
        quantize(tokens: 0..<tokens)
        markQuantized()
    }

    /// Quantizes the tokens in `range` (both forms), for a caller that splits a batch across
    /// threads (disjoint ranges write disjoint memory); it calls ``markQuantized()`` after all.
    public func quantize(tokens range: Range<Int>) {
        guard isQuantizable, !range.isEmpty else { return }
        precondition(range.lowerBound >= 0 && range.upperBound <= tokens, "tokens \(range) of \(tokens)")
        let first = range.lowerBound * width, n = Int32(range.count * width)
        moe_quantize_activations(values + first, n, q + first, d + first / 32, s16 + first / 16)
        if let qk, let dk, let bsums, let sums {
            moe_quantize_activations_k(values + first, n, qk + first, dk + first / 256, bsums + first / 16, sums + first / 16)
        }
    }

    /// Declares every token quantized (after ``quantize(tokens:)`` covered them all).
    public func markQuantized() { quantizedTokens = tokens }

    /// Both quantized forms for tokens from `first` on (C view for the kernels).
    func activations(from first: Int) -> moe_activations {
        let n = width
        return moe_activations(
            q: UnsafePointer(q + first * n), d: UnsafePointer(d + first * n / 32), s16: UnsafePointer(s16 + first * n / 16),
            qk: qk.map { UnsafePointer($0 + first * n) }, dk: dk.map { UnsafePointer($0 + first * n / 256) },
            bsums: bsums.map { UnsafePointer($0 + first * n / 16) }, sums: sums.map { UnsafePointer($0 + first * n / 16) })
    }
}

/// A weight matrix ready for the kernels: `rows` rows of `columns` elements of `type`.
///
/// `@unchecked Sendable` because `base` is a raw pointer. Sharing is safe because the matrix
/// is a read-only view: the kernels only read through `base`, every stored property is a
/// `let`, and whoever makes the matrix keeps the bytes alive and unchanged while any thread
/// uses it (a mapped model file, or an expert pinned in the pool for the forward pass).
public struct WeightMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let base: UnsafeRawPointer
    public let rows: Int
    public let columns: Int
    public let rowBytes: Int

    public init(type: GGMLType, base: UnsafeRawPointer, rows: Int, columns: Int) throws {
        guard let rowBytes = type.traits.byteCount(elements: columns) else {
            throw QuantizationError.partialBlock(type, elements: columns)
        }
        self.type = type
        self.base = base
        self.rows = rows
        self.columns = columns
        self.rowBytes = rowBytes
    }
}

/// How a weight type is computed.
public enum KernelPath: String, Sendable, CaseIterable {
    /// Optimised kernels: 8-bit activations for block-quantized weights (as llama.cpp),
    /// f32 activations for F32/F16/BF16 weights.
    case fast
    /// Dequantize each row to f32 and take an f32 dot product: slow, exact, the yardstick.
    case reference
}

public enum Kernels {
    /// Name of the instruction-set level the C kernels run at on this CPU.
    public static var isa: String { String(cString: moe_kernel_isa()) }

    /// Whether the fast path uses 8-bit activations for this weight type.
    public static func usesQuantizedActivations(_ type: GGMLType) -> Bool { moe_kernel_kind(Int32(type.rawValue)) == 1 }

    /// Whether the fast path has a kernel for this type.
    public static func hasFastKernel(_ type: GGMLType) -> Bool { moe_kernel_kind(Int32(type.rawValue)) != 0 }

    /// `output[(t - tokens.lowerBound) * ldy + r] = W[r] · input[t]` for rows `rows` and the
    /// tokens `tokens` of `input` (all of them by default).
    ///
    /// The batch must already be quantized (``ActivationBatch/quantize()``) when the fast path
    /// uses 8-bit activations for this type; this is checked.
    ///
    /// - Parameter scratch: `columns` floats, used by the reference path only.
    public static func matmul(
        _ w: WeightMatrix, rows: Range<Int>, input: ActivationBatch, tokens: Range<Int>? = nil,
        output: UnsafeMutablePointer<Float>, ldy: Int, path: KernelPath, scratch: UnsafeMutablePointer<Float>
    ) throws {
        let tokens = tokens ?? 0..<input.tokens
        guard !rows.isEmpty, !tokens.isEmpty else { return }
        precondition(input.width == w.columns, "activation width must match the weight's columns")
        precondition(tokens.upperBound <= input.tokens, "token range outside the batch")
        let n = w.columns
        let t0 = tokens.lowerBound
        let type = Int32(w.type.rawValue)
        let kind = path == .fast ? moe_kernel_kind(type) : 0
        if kind == 1, input.isQuantizable {
            precondition(input.isQuantized, "quantize the activation batch before a parallel region")
            var activations = input.activations(from: t0)
            let status = moe_matmul_qa(
                type, Int32(n), w.base, w.rowBytes, Int32(rows.lowerBound), Int32(rows.upperBound), Int32(tokens.count),
                &activations, output, Int32(ldy))
            if status == 0 { return }
        } else if kind == 2 {
            let status = moe_matmul_f(
                type, Int32(n), w.base, w.rowBytes, Int32(rows.lowerBound), Int32(rows.upperBound), Int32(tokens.count),
                input.values + t0 * n, output, Int32(ldy))
            if status == 0 { return }
        }
        // Reference: dequantize a row, f32 dot with each token.
        guard let dequantize = w.type.traits.dequantize else {
            throw QuantizationError.unsupported(w.type, operation: "matrix-vector product")
        }
        for r in rows {
            dequantize(w.base + r * w.rowBytes, scratch, n)
            for t in tokens {
                output[(t - t0) * ldy + r] = MatVec.dot(scratch, input.row(t), count: n)
            }
        }
    }

    /// Whether `matmul` on this path needs the batch quantized first.
    public static func needsQuantizedInput(_ type: GGMLType, path: KernelPath) -> Bool {
        path == .fast && usesQuantizedActivations(type)
    }

    /// f32 dot product (vectorized C).
    @inline(__always) public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        moe_dot_f32(a, b, Int32(count))
    }

    /// `y += a * x` (vectorized C).
    @inline(__always) public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        moe_axpy_f32(a, x, y, Int32(count))
    }

    /// `y *= a`.
    @inline(__always) public static func scale(_ a: Float, _ y: UnsafeMutablePointer<Float>, count: Int) {
        moe_scale_f32(a, y, Int32(count))
    }

    /// Dot product of IEEE half values with floats.
    @inline(__always) public static func dot(half a: UnsafePointer<UInt16>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        moe_dot_f16(a, b, Int32(count))
    }

    /// `y += a * x` for half values `x`.
    @inline(__always) public static func axpy(_ a: Float, half x: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        moe_axpy_f16(a, x, y, Int32(count))
    }

    /// Floats to IEEE half (round to nearest even).
    @inline(__always) public static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, count: Int) {
        moe_f32_to_f16(x, y, Int32(count))
    }
}
