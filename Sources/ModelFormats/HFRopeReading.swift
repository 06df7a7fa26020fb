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
    /// The RoPE base frequency of a family that computes only the default RoPE: throws, naming
    /// the key, for any scaling (see ``rope(defaultTheta:)``).
    public func ropeTheta(default value: Double) throws -> Double {
        let rope = try rope(defaultTheta: value)
        if let scaling = rope.scaling {
            throw invalid("rope scaling \(scaling.kind.rawValue) is not supported by \(configClass.name)")
        }
        return rope.theta
    }

    /// The RoPE base frequency and scaling. Types `default`, `linear`, `yarn` and `llama3` are
    /// read with every parameter transformers' `_compute_*_parameters` reads (absent ones take
    /// its defaults, recorded as such); `dynamic`, `longrope` and anything else throw naming the
    /// key, as does a `partial_rotary_factor` other than 1.
    /// - Parameter defaultTheta: the config class's `default_theta` (5.x) / `rope_theta` default (4.57).
    /// - Parameter partialRotary: the family reads `partial_rotary_factor` itself (GLM-4.5's `partialRotaryFactor(default:)`).
    public func rope(defaultTheta value: Double, partialRotary: Bool = false) throws -> (theta: Double, scaling: ModelConfiguration.RopeScaling?) {
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
        var scalings: [(value: ModelConfiguration.RopeScaling, key: String)] = []
        if !isNull("partial_rotary_factor") { factors.append((values["partial_rotary_factor"]!, "partial_rotary_factor")) }
        for (key, object) in objects {
            for name in ["rope_type", "type"] where object[name] != nil && !(object[name] is NSNull) {
                guard let type = object[name] as? String else {
                    throw invalid("\(key).\(name) should be a string, found \(ModelFormatError.shown("\(object[name]!)"))")
                }
                if type != "default" {
                    guard let kind = ModelConfiguration.RopeScaling.Kind(rawValue: type) else {
                        throw invalid("\(key).\(name) \"\(ModelFormatError.shown(type))\" is not supported (RoPE types: default, linear, yarn, llama3; dynamic and longrope are not implemented)")
                    }
                    scalings.append((try scaling(kind, object, key: key), "\(key).\(name)"))
                }
                typeKey = typeKey ?? "\(key).\(name)"
                break  // `rope_type` wins over the older `type` when both are present
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
        // Scaling in one place and the default RoPE in another, or two different scalings, mean
        // different models to different releases or layers.
        if let first = scalings.first, scalings.count != objects.filter({ $0.object["rope_type"] != nil || $0.object["type"] != nil }).count
            || scalings.contains(where: { $0.value != first.value }) {
            throw invalid("\(first.key) and another RoPE entry of this file describe different RoPE scalings (per layer type or per release)")
        }
        let scaling = scalings.first
        record("rope type", scaling?.value.kind.rawValue ?? "default", key: scaling?.key ?? typeKey)
        record("rope theta", Self.show(thetas.first?.value ?? value), key: thetas.first?.key)
        return (thetas.first?.value ?? value, scaling?.value)
    }

    /// One scaling object (`rope_scaling` or `rope_parameters`) read as transformers' function for
    /// `kind` reads it; every value is recorded with its key, or as that function's default.
    private func scaling(_ kind: ModelConfiguration.RopeScaling.Kind, _ object: [String: Any], key: String) throws -> ModelConfiguration.RopeScaling {
        let function = "transformers' _compute_\(kind == .linear ? "linear_scaling_rope" : kind.rawValue)_parameters"
        func number(_ name: String) throws -> Double? {
            guard let raw = object[name], !(raw is NSNull) else { return nil }
            guard let n = raw as? NSNumber, n.doubleValue.isFinite else {
                throw invalid("\(key).\(name) should be a number, found \(ModelFormatError.shown("\(raw)"))")
            }
            return n.doubleValue
        }
        func required(_ name: String) throws -> Double {
            guard let v = try number(name) else { throw invalid("\(key).\(name) is required for \(kind.rawValue) RoPE scaling") }
            log.entries.append(.init(setting: "rope \(name)", value: Self.show(v), origin: .file, source: "\(key).\(name)"))
            return v
        }
        /// `x or default`, as transformers reads beta_fast/beta_slow (0 and null take the default).
        func orDefault(_ name: String, _ fallback: Double) throws -> Double {
            let v = try number(name)
            let used = (v ?? 0) == 0 ? fallback : v!
            log.entries.append(.init(setting: "rope \(name)", value: Self.show(used), origin: v == nil || v == 0 ? .default : .file,
                                     source: v == nil || v == 0 ? function : "\(key).\(name)"))
            return used
        }
        func optional(_ name: String) throws -> Double? {
            let v = try number(name)
            if let v { log.entries.append(.init(setting: "rope \(name)", value: Self.show(v), origin: .file, source: "\(key).\(name)")) }
            return v
        }
        func context(_ name: String) throws -> Int? {
            guard let v = try number(name) else { return nil }
            guard let i = Int(exactly: v) else { throw invalid("\(key).\(name) should be an integer, found \(Self.show(v))") }
            log.entries.append(.init(setting: "rope \(name)", value: "\(i)", origin: .file, source: "\(key).\(name)"))
            return i
        }
        var result = ModelConfiguration.RopeScaling(kind: kind, factor: try required("factor"))
        switch kind {
        case .linear:
            break
        case .yarn:
            result.originalContextLength = try context("original_max_position_embeddings")
            if result.originalContextLength == nil {
                log.entries.append(.init(setting: "rope original_max_position_embeddings", value: "max_position_embeddings", origin: .default, source: function))
            }
            result.attentionFactor = try optional("attention_factor")
            result.mscale = try optional("mscale")
            result.mscaleAllDim = try optional("mscale_all_dim")
            result.betaFast = try orDefault("beta_fast", 32)
            result.betaSlow = try orDefault("beta_slow", 1)
            if let raw = object["truncate"], !(raw is NSNull) {
                guard let flag = raw as? Bool else { throw invalid("\(key).truncate should be true or false, found \(ModelFormatError.shown("\(raw)"))") }
                result.truncate = flag
            }
            log.entries.append(.init(setting: "rope truncate", value: "\(result.truncate)", origin: object["truncate"] == nil ? .default : .file,
                                     source: object["truncate"] == nil ? function : "\(key).truncate"))
        case .llama3:
            result.lowFrequencyFactor = try required("low_freq_factor")
            result.highFrequencyFactor = try required("high_freq_factor")
            guard let original = try context("original_max_position_embeddings") else {
                throw invalid("\(key).original_max_position_embeddings is required for llama3 RoPE scaling")
            }
            result.originalContextLength = original
        }
        return result
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

/// RoPE scaling in GGUF metadata, as llama.cpp reads it (`llama_model::load_hparams`,
/// llama-context.cpp): `ARCH.rope.scaling.type` (`none`, `linear`, `yarn`; absent means linear,
/// which a missing or zero factor makes no scaling), `ARCH.rope.scaling.factor` (or the older
/// `ARCH.rope.scale_linear`), `ARCH.rope.scaling.original_context_length` (default: the context
/// length), `ARCH.rope.scaling.attn_factor` (a further factor on cos/sin, default 1), and the
/// YaRN keys llama.cpp's converter copies from `config.json`: `yarn_beta_fast`, `yarn_beta_slow`,
/// `yarn_ext_factor`, `yarn_attn_factor` (transformers' `attention_factor`) and
/// `yarn_log_multiplier` (0.1 · DeepSeek's `mscale_all_dim`). llama.cpp's YaRN always rounds the
/// correction range (`truncate` true). `longrope` is refused.
extension GGUFMetadataReader {
    public func ropeScaling() throws -> (scaling: ModelConfiguration.RopeScaling?, provenance: [ModelConfiguration.Provenance]) {
        var notes: [ModelConfiguration.Provenance] = []
        func note(_ setting: String, _ value: String, _ suffix: String?) {
            notes.append(.init(setting: setting, value: value, origin: suffix == nil ? .default : .file,
                               source: suffix.map { "\(architecture).\($0)" } ?? "llama.cpp"))
        }
        let typeKey = "rope.scaling.type"
        let type: String?
        if let v = value(typeKey) {
            guard let s = v.string else {
                throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).\(typeKey)", reason: "expected a string, found \(v)")
            }
            type = s
        } else {
            type = nil
        }
        let factorKey = value("rope.scaling.factor") != nil ? "rope.scaling.factor" : value("rope.scale_linear") != nil ? "rope.scale_linear" : nil
        let factor = try factorKey.map { try double($0, default: 0) } ?? 0
        let kind: ModelConfiguration.RopeScaling.Kind
        switch type {
        case "none":
            note("rope type", "default", typeKey)
            return (nil, notes)
        case nil, "linear":
            guard factor != 0, factor != 1 else {
                note("rope type", "default", type == nil ? nil : typeKey)
                return (nil, notes)
            }
            kind = .linear
        case "yarn":
            kind = .yarn
        default:
            throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).\(typeKey)",
                                                   reason: "RoPE scaling \(ModelFormatError.shown(type ?? "")) is not supported (none, linear, yarn)")
        }
        note("rope type", kind.rawValue, type == nil ? nil : typeKey)
        guard factor > 0, factor.isFinite else {
            throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).\(factorKey ?? "rope.scaling.factor")", reason: "RoPE scaling needs a positive factor")
        }
        note("rope factor", HFConfigReader.show(factor), factorKey)
        var scaling = ModelConfiguration.RopeScaling(kind: kind, factor: factor)
        let extra = try double("rope.scaling.attn_factor", default: 1)
        guard kind == .yarn else {
            if extra != 1 {
                throw ModelFormatError.invalidMetadata(path: file.path, key: "\(architecture).rope.scaling.attn_factor", reason: "an attention factor without YaRN is not supported")
            }
            return (scaling, notes)
        }
        scaling.originalContextLength = try optionalInt("rope.scaling.original_context_length")
        note("rope original context", scaling.originalContextLength.map { "\($0)" } ?? "context length",
             scaling.originalContextLength == nil ? nil : "rope.scaling.original_context_length")
        func yarn(_ suffix: String, _ fallback: Double, _ setting: String) throws -> Double {
            let present = value("rope.scaling.\(suffix)") != nil
            let v = try double("rope.scaling.\(suffix)", default: fallback)
            note(setting, HFConfigReader.show(v), present ? "rope.scaling.\(suffix)" : nil)
            return v
        }
        scaling.betaFast = try yarn("yarn_beta_fast", 32, "rope beta_fast")
        scaling.betaSlow = try yarn("yarn_beta_slow", 1, "rope beta_slow")
        scaling.extrapolationFactor = try yarn("yarn_ext_factor", 1, "rope extrapolation factor")
        if value("rope.scaling.yarn_log_multiplier") != nil {
            // llama.cpp: mscale_all_dim = multiplier / 0.1, mscale 1 (DeepSeek-V2 adjusts mscale itself).
            scaling.mscaleAllDim = try double("rope.scaling.yarn_log_multiplier", default: 0) / 0.1
            scaling.mscale = 1
            note("rope mscale_all_dim", HFConfigReader.show(scaling.mscaleAllDim!), "rope.scaling.yarn_log_multiplier")
        }
        if value("rope.scaling.yarn_attn_factor") != nil {
            scaling.attentionFactor = try double("rope.scaling.yarn_attn_factor", default: 1)
        }
        if extra != 1 {
            scaling.attentionFactor = scaling.resolvedAttentionFactor * extra
        }
        note("rope attention factor", HFConfigReader.show(scaling.resolvedAttentionFactor),
             value("rope.scaling.yarn_attn_factor") != nil ? "rope.scaling.yarn_attn_factor" : extra != 1 ? "rope.scaling.attn_factor" : nil)
        return (scaling, notes)
    }
}
