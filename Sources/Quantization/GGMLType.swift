/// Every tensor element type that can appear in a GGUF file, with the ids ggml assigns them.
///
/// The numbers are part of the GGUF format (`enum ggml_type` in ggml.h); ids that ggml
/// retired (4, 5, 31-33, 36-38) are absent on purpose.
public enum GGMLType: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q8_1 = 9
    case q2_K = 10
    case q3_K = 11
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case q8_K = 15
    case iq2_xxs = 16
    case iq2_xs = 17
    case iq3_xxs = 18
    case iq1_s = 19
    case iq4_nl = 20
    case iq3_s = 21
    case iq2_s = 22
    case iq4_xs = 23
    case i8 = 24
    case i16 = 25
    case i32 = 26
    case i64 = 27
    case f64 = 28
    case iq1_m = 29
    case bf16 = 30
    case tq1_0 = 34
    case tq2_0 = 35
    case mxfp4 = 39

    /// The traits row of this type (block size, bytes per block, kernels).
    @inlinable public var traits: QuantTraits { QuantTraits.table[Int(rawValue)]! }

    /// ggml's lower-case name, e.g. `q4_K`, `f16`.
    public var description: String { traits.name }

    /// Looks a type up by its ggml name, case-insensitively (`q4_k`, `Q8_0`, `bf16`).
    public init?(name: String) {
        let lowered = name.lowercased()
        guard let match = GGMLType.allCases.first(where: { $0.traits.name.lowercased() == lowered }) else { return nil }
        self = match
    }
}
