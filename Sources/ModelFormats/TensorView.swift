import Quantization

/// A typed, read-only view of one tensor's bytes inside a mapped file (or any owned buffer).
///
/// ### Layout
/// `shape` is in ggml order: `shape[0]` is the fastest-varying (contiguous) dimension. A
/// linear layer `y = W x` with `in` inputs and `out` outputs has shape `[in, out]`: `out` rows
/// of `in` elements each. Hugging Face stores the same matrix as `[out, in]` row-major, which
/// is the same bytes; the safetensors reader reverses the shape so both agree.
///
/// The view keeps its owner (the mapping) alive, so it stays valid as long as it exists.
///
/// `@unchecked Sendable`: `data` is a raw pointer, and raw pointers are not Sendable. The bytes
/// are read-only for the view's whole life: its `owner` (itself Sendable) keeps them alive,
/// and no owner writes them while views exist — file mappings are read-only, an expert pool
/// block is written before its views are made and is not reused while they are pinned, and a
/// requantized expert's memory is written only before its views are made.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let shape: [Int]
    public let data: UnsafeRawBufferPointer
    let owner: (any AnyObject & Sendable)?

    public init(name: String, type: GGMLType, shape: [Int], data: UnsafeRawBufferPointer, owner: (any AnyObject & Sendable)?) {
        self.name = name
        self.type = type
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Elements per row (the contiguous dimension).
    public var rowLength: Int { shape.first ?? 1 }
    /// Number of rows: the product of every dimension but the first.
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
    /// Bytes per row.
    public var rowBytes: Int { type.traits.byteCount(elements: rowLength) ?? 0 }

    /// The `index`-th slab along the outermost dimension, e.g. expert `e` of a stacked
    /// `[n_embd, n_ff, n_expert]` tensor. Throws if `index` is outside the tensor.
    public func slab(_ index: Int) throws -> TensorView {
        guard shape.count >= 2, let outer = shape.last, index >= 0, index < outer else {
            throw ModelFormatError.invalidTensor(path: "", tensor: name, reason: "no slab \(index) in shape \(shape)")
        }
        let slabBytes = data.count / outer
        let start = index * slabBytes
        return TensorView(
            name: "\(name)[\(index)]", type: type, shape: Array(shape.dropLast()),
            data: UnsafeRawBufferPointer(rebasing: data[start..<(start + slabBytes)]), owner: owner)
    }

    /// Dequantizes row `row` into `destination` (which must hold `rowLength` floats).
    public func dequantizeRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) throws {
        guard row >= 0, row < rowCount, let base = data.baseAddress else {
            throw ModelFormatError.invalidTensor(path: "", tensor: name, reason: "row \(row) outside \(rowCount) rows")
        }
        try type.dequantize(base + row * rowBytes, into: destination, count: rowLength)
    }

    /// The whole tensor as floats.
    public func toFloats() throws -> [Float] {
        let count = elementCount
        guard count > 0, let base = data.baseAddress else { return [] }
        return try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try type.dequantize(base, into: buffer.baseAddress!, count: count)
            initialized = count
        }
    }
}
