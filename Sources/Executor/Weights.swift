import ModelFormats
import Quantization

/// A linear layer `y = W x (+ b)`.
struct Linear: Sendable {
    let matrix: WeightMatrix
    let bias: [Float]?
    /// Keeps the mapping that `matrix` points into alive.
    let view: TensorView

    init(_ view: TensorView, bias: [Float]?) throws {
        self.view = view
        self.matrix = try WeightMatrix(view: view)
        self.bias = bias
    }

    var inputs: Int { matrix.columns }
    var outputs: Int { matrix.rows }
}

extension WeightMatrix {
    init(view: TensorView) throws {
        guard let base = view.data.baseAddress else {
            throw ModelFormatError.invalidTensor(path: "", tensor: view.name, reason: "has no data")
        }
        try self.init(type: view.type, base: base, rows: view.rowCount, columns: view.rowLength)
    }
}

/// How a block reads its weights: by runtime name from the model source, with the shape the
/// configuration implies checked (a mismatch or a missing tensor throws ``ModelFormatError``
/// naming the tensor and the file). Each block loads its own weights through one of these.
struct WeightLoader {
    let source: ModelSource
    var configuration: ModelConfiguration { source.configuration }

    /// A vector converted to f32 once (norms).
    func vector(_ name: WeightName, _ count: Int) throws -> [Float] {
        try source.require(name, shape: [count]).toFloats()
    }

    /// A tensor of any shape converted to f32 once (stacked biases).
    func vector(_ name: WeightName, shape: [Int]) throws -> [Float] {
        try source.require(name, shape: shape).toFloats()
    }

    /// `outputs` rows of `inputs` elements, with an optional f32 bias if the file has one.
    func linear(_ name: WeightName, inputs: Int, outputs: Int, bias: WeightName? = nil) throws -> Linear {
        let weight = try source.require(name, shape: [inputs, outputs])
        let b = try bias.flatMap { try source.optional($0, shape: [outputs])?.toFloats() }
        return try Linear(weight, bias: b)
    }

    /// A SwiGLU MLP `down(silu(gate x) * up x)` over the hidden size.
    func swiGLU(gate: WeightName, up: WeightName, down: WeightName, size: Int) throws -> SwiGLU {
        let h = configuration.hiddenSize
        return SwiGLU(gate: try linear(gate, inputs: h, outputs: size), up: try linear(up, inputs: h, outputs: size),
                      down: try linear(down, inputs: size, outputs: h))
    }

    /// The name of `name` in the file, for messages.
    func fileName(of name: WeightName) -> String { source.fileName(of: name) }
}
