import Foundation

/// RoPE and per-layer attention kinds as transformers reads them from `config.json`; one
/// owner for every family.
///
/// RoPE has two spellings, both read whatever `transformers_version` says:
/// - 5.x: `rope_parameters` = `{"rope_type": "default", "rope_theta": 1000000.0, …}`, or one such
///   object per entry of `layer_types` (`{"full_attention": {…}, "sliding_attention": {…}}`);
/// - 4.57 and older: a top-level `rope_theta`, with `rope_scaling` (`rope_type`, or the older
///   `type`, plus the scheme's parameters) or null.
///
/// transformers 5.x merges them (modeling_rope_utils.py, `convert_rope_params_to_dict` and
/// `standardize_rope_params`): a non-empty `rope_scaling` replaces `rope_parameters`; the theta is
/// that object's `rope_theta`, else the top-level `rope_theta`, else the class's `default_theta`;
/// the type is `rope_type`, else `type`, else `default`. 4.57 takes the theta from `rope_theta`
/// only. So a file may hold the theta in several places: they must agree, or the file means
/// different models to the two releases and is refused.
extension HFConfigReader {
    /// The RoPE base frequency. Throws, naming the key, for a rope type other than `default`
    /// (YaRN, linear, dynamic, llama3, longrope: not implemented, and not approximated) and for a
    /// `partial_rotary_factor` other than 1.
    /// - Parameter value: the config class's `default_theta` (5.x) / `rope_theta` default (4.57).
    /// - Parameter partialRotary: the family reads `partial_rotary_factor` itself (``partialRotaryFactor(default:)``).
    public func ropeTheta(default value: Double, partialRotary: Bool = false) throws -> Double {
        var objects: [(key: String, object: [String: Any])] = []
        for key in ["rope_scaling", "rope_parameters"] where !isNull(key) {
            guard let object = values[key] as? [String: Any] else {
                throw invalid("\(key) should be an object, found \(ModelFormatError.shown("\(values[key]!)"))")
            }
            objects += try perLayerType(object, key: key)
        }
        var typeKey: String? = nil
        var thetas: [(value: Double, key: String)] = []
        var factors: [(value: Any, key: String)] = []
        if !isNull("partial_rotary_factor") { factors.append((values["partial_rotary_factor"]!, "partial_rotary_factor")) }
        for (key, object) in objects {
            for name in ["rope_type", "type"] where object[name] != nil && !(object[name] is NSNull) {
                guard let type = object[name] as? String else {
                    throw invalid("\(key).\(name) should be a string, found \(ModelFormatError.shown("\(object[name]!)"))")
                }
                guard type == "default" else {
                    throw invalid("\(key).\(name) \"\(ModelFormatError.shown(type))\" is not supported yet (only the default RoPE; YaRN, linear, dynamic, llama3 and longrope scaling are not implemented)")
                }
                typeKey = typeKey ?? "\(key).\(name)"
            }
            if let theta = object["rope_theta"], !(theta is NSNull) {
                guard let n = theta as? NSNumber else {
                    throw invalid("\(key).rope_theta should be a number, found \(ModelFormatError.shown("\(theta)"))")
                }
                thetas.append((n.doubleValue, "\(key).rope_theta"))
            }
            if let factor = object["partial_rotary_factor"], !(factor is NSNull) { factors.append((factor, "\(key).partial_rotary_factor")) }
        }
        if let top = try optionalDouble("rope_theta") { thetas.append((top, "rope_theta")) }
        for (factor, key) in factors where !partialRotary && (factor as? NSNumber)?.doubleValue != 1 {
            throw invalid("\(key) \(ModelFormatError.shown("\(factor)")) is not supported (RoPE on part of each head)")
        }
        if let first = thetas.first, let other = thetas.first(where: { $0.value != first.value }) {
            throw invalid("\(first.key) = \(Self.show(first.value)) and \(other.key) = \(Self.show(other.value)) disagree (which one applies depends on the transformers release or the layer)")
        }
        record("rope type", "default", key: typeKey)
        record("rope theta", Self.show(thetas.first?.value ?? value), key: thetas.first?.key)
        return thetas.first?.value ?? value
    }

    /// `object` itself, or its entries when it is keyed by the file's `layer_types`.
    private func perLayerType(_ object: [String: Any], key: String) throws -> [(key: String, object: [String: Any])] {
        let types = Set(try stringList("layer_types") ?? [])
        let nested = object.keys.filter(types.contains).sorted()
        guard !nested.isEmpty else { return [(key, object)] }
        return try nested.map { type in
            guard let inner = object[type] as? [String: Any] else {
                throw invalid("\(key).\(type) should be an object (layers without RoPE are not supported)")
            }
            return ("\(key).\(type)", inner)
        }
    }

    /// `layer_types` (5.x): the attention kind of each layer, checked against the layer count;
    /// nil when the file has none. Only `full_attention` and `sliding_attention` are known.
    public func layerTypes(layers: Int) throws -> [String]? {
        guard let list = try stringList("layer_types") else { return nil }
        guard list.count == layers else { throw invalid("layer_types has \(list.count) entries for \(layers) layers") }
        for type in list where type != "full_attention" && type != "sliding_attention" {
            throw invalid("layer_types entry \"\(ModelFormatError.shown(type))\" is not supported (only full_attention and sliding_attention)")
        }
        return list
    }

    private func stringList(_ key: String) throws -> [String]? {
        guard !isNull(key) else { return nil }
        guard let list = values[key] as? [Any], let strings = list as? [String], strings.count == list.count else {
            throw invalid("\(key) should be a list of strings")
        }
        return strings
    }
}
