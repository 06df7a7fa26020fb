/// One of the weight matrices of a routed expert, in the order every expert is stored, loaded
/// and computed: gate, up, down. The one definition of "the tensors of expert e in layer l":
/// their runtime names (``WeightName``, which knows how GGUF stacks a layer's experts), the
/// shapes the configuration implies, and their names inside a `.moe` record.
///
/// Gate and up are `[hidden, ffn]` (ffn rows of hidden elements), down is `[ffn, hidden]`
/// (ggml order, the contiguous dimension first).
public enum ExpertTensor: Int, CaseIterable, Sendable {
    case gate, up, down

    /// The tensor's name in a `.moe` record's manifest entry.
    public var recordName: String {
        switch self {
        case .gate: return "gate"
        case .up: return "up"
        case .down: return "down"
        }
    }

    /// The runtime name of this tensor of expert `expert` in layer `layer`.
    public func weightName(layer: Int, expert: Int) -> WeightName {
        switch self {
        case .gate: return .expertGate(layer, expert)
        case .up: return .expertUp(layer, expert)
        case .down: return .expertDown(layer, expert)
        }
    }

    /// The ggml-order shape `configuration` implies.
    public func shape(_ configuration: ModelConfiguration) -> [Int] {
        let h = configuration.hiddenSize, f = configuration.expertFFNSize
        return self == .down ? [f, h] : [h, f]
    }

    /// Runtime names of every tensor of one expert, in record order.
    public static func weightNames(layer: Int, expert: Int) -> [WeightName] {
        allCases.map { $0.weightName(layer: layer, expert: expert) }
    }
}

extension ModelSource {
    /// Gate, up and down of expert `expert` in layer `layer` (in ``ExpertTensor`` order), checked
    /// against the shapes the configuration implies: slab `expert` of a GGUF file's stacked
    /// tensors, or a Hugging Face checkpoint's per-expert tensors. A `.moe` store's experts are
    /// records, paged by the expert store, not weights: asking a store throws "missing".
    public func expertTensors(layer: Int, expert: Int) throws -> [TensorView] {
        try ExpertTensor.allCases.map { try require($0.weightName(layer: layer, expert: expert), shape: $0.shape(configuration)) }
    }
}
