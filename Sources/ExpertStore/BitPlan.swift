import Foundation
import ModelFormats
import Quantization

/// Which type each expert is stored at: a default and per-expert overrides. A readable JSON
/// file users can write by hand, and the output of the planner (`moe convert --target-size`).
///
///     {"format": "swiftmoe-bit-plan", "version": 1, "default": "q4_K",
///      "experts": [{"layer": 0, "expert": 3, "type": "q8_0"}, ...]}
public struct BitPlan: Codable, Sendable, Equatable {
    public struct Assignment: Codable, Sendable, Equatable {
        public var layer: Int
        public var expert: Int
        public var type: String
        public init(layer: Int, expert: Int, type: String) {
            self.layer = layer
            self.expert = expert
            self.type = type
        }
    }

    public var format = "swiftmoe-bit-plan"
    public var version = 1
    /// Type of every expert not listed; "keep" stores the source's bytes unchanged.
    public var `default`: String
    public var experts: [Assignment]

    public init(default type: String, experts: [Assignment] = []) {
        self.default = type
        self.experts = experts
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalid(path: String, reason: String)
        public var description: String {
            switch self {
            case let .invalid(path, reason): return "\(path): invalid bit plan: \(reason)"
            }
        }
    }

    public static func load(path: String) throws -> BitPlan {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error.invalid(path: path, reason: "cannot read the file")
        }
        let plan: BitPlan
        do {
            plan = try JSONDecoder().decode(BitPlan.self, from: data)
        } catch {
            throw Error.invalid(path: path, reason: "not a bit plan JSON (\(ModelFormatError.shown(decoding: error)))")
        }
        guard plan.format == "swiftmoe-bit-plan", plan.version == 1 else {
            throw Error.invalid(path: path, reason: "format \(ModelFormatError.shown(plan.format)) version \(plan.version); expected swiftmoe-bit-plan version 1")
        }
        return plan
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(self), to: path)
    }

    /// A type name that the store can write: "keep" or a quantizable GGML type.
    public static func storableType(_ name: String) -> GGMLType?? {
        if name.lowercased() == "keep" { return .some(nil) }
        guard let type = GGMLType(name: name), type.traits.quantize != nil, type.traits.dequantize != nil else { return nil }
        return .some(type)
    }

    /// Resolves the plan against a configuration: the type of every expert (nil = keep).
    /// Throws naming the first unknown type or out-of-range expert.
    public func resolve(for configuration: ModelConfiguration, source: String = "bit plan") throws -> [ExpertKey: GGMLType?] {
        guard let fallback = BitPlan.storableType(`default`) else {
            throw Error.invalid(path: source, reason: "default type \(ModelFormatError.shown(`default`)) is not one the store can write (\(BitPlan.writableTypeNames))")
        }
        var result: [ExpertKey: GGMLType?] = [:]
        for l in 0..<configuration.layerCount where configuration.layerKinds[l] == .moe {
            for e in 0..<configuration.expertCount { result[ExpertKey(layer: l, expert: e)] = fallback }
        }
        for a in experts {
            let key = ExpertKey(layer: a.layer, expert: a.expert)
            guard result[key] != nil else {
                throw Error.invalid(path: source, reason: "layer \(a.layer) has no expert \(a.expert)")
            }
            guard let type = BitPlan.storableType(a.type) else {
                throw Error.invalid(path: source, reason: "expert \(a.expert) of layer \(a.layer): type \(ModelFormatError.shown(a.type)) is not one the store can write (\(BitPlan.writableTypeNames))")
            }
            result[key] = type
        }
        return result
    }

    public static var writableTypeNames: String {
        (["keep"] + GGMLType.allCases.filter { $0.traits.quantize != nil && $0.traits.dequantize != nil }.map(\.description)).joined(separator: ", ")
    }
}
