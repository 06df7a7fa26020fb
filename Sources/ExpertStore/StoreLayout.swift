import ModelFormats
import Quantization

/// How an expert's planned type turns into a `.moe` record: the type fallbacks for rows a
/// block does not divide. The record's bytes (offsets, padding) are ``ExpertRecordLayout``'s;
/// `moe convert`, the bit planner and the calibration's in-memory copies all go through
/// ``record(of:at:)``.
public enum StoreLayout {
    /// Types used when a row length is not a whole number of the planned type's blocks,
    /// closest in bits per weight with 32-element blocks (IQ4_XS: IQ4_NL, as llama.cpp), then f16.
    public static let fallbackTypes: [GGMLType: GGMLType] = [.q2_K: .q4_0, .q3_K: .q4_0, .q4_K: .q4_0, .q5_K: .q5_0, .q6_K: .q8_0, .iq4_xs: .iq4_nl]

    /// The type a tensor with rows of `rowLength` is actually stored at when `planned` is asked for.
    public static func storableType(_ planned: GGMLType, rowLength: Int) -> GGMLType {
        var type = planned
        if rowLength % type.traits.blockSize != 0, let next = fallbackTypes[type] { type = next }
        if rowLength % type.traits.blockSize != 0 { type = .f16 }
        return type
    }

    /// The record an expert whose tensors are `source` (gate, up, down as type and shape)
    /// becomes at `planned` (nil keeps the source's types and bytes). Throws, naming `expert`,
    /// if the shapes cannot form a record (see ``ExpertRecordLayout/init(_:)``).
    public static func record(of source: [(type: GGMLType, shape: [Int])], at planned: GGMLType?, expert: String) throws -> ExpertRecordLayout {
        let stored = source.map { s in
            (type: planned.map { $0 == s.type ? s.type : storableType($0, rowLength: s.shape.first ?? 1) } ?? s.type, shape: s.shape)
        }
        guard let layout = ExpertRecordLayout(stored) else {
            let described = stored.map { "\($0.type) \($0.shape)" }.joined(separator: ", ")
            throw ModelFormatError.invalidTensor(path: "", tensor: expert, reason: "tensors \(described) do not form an expert record")
        }
        return layout
    }
}
