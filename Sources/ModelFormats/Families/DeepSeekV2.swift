/// DeepSeek-V2 and V2-Lite (`DeepseekV2ForCausalLM`), and every GGUF of llama.cpp's `deepseek2`
/// architecture (DeepSeek-V2, V2-Lite, V3 and the models reusing it).
///
/// Attention: multi-head latent attention (``ModelConfiguration/LatentAttention``) with a compressed
/// KV cache, decoupled RoPE on `qk_rope_head_dim` dimensions rotating adjacent pairs (transformers'
/// `apply_rotary_emb` through complex numbers; llama.cpp "normal" RoPE). The first
/// `first_k_dense_replace` layers are dense; MoE layers have `n_shared_experts` shared experts run
/// as one MLP of `n_shared_experts × moe_intermediate_size`, always resident.
///
/// Routing (transformers 4.57 and 5.x, `DeepseekV2MoEGate`): softmax; `topk_method` `greedy` (top-k
/// over all experts) or `group_limited_greedy` (the `topk_group` groups whose best expert scores
/// highest, then top-k inside them); weights are the probabilities times `routed_scaling_factor`,
/// never renormalised (the class reads `norm_topk_prob` but its gate does not use it).
/// A GGUF routes as llama.cpp does: `expert_gating_func` (softmax when absent), groups scored by
/// their best two experts, renormalised if `expert_weights_norm`, scaled by `expert_weights_scale`.
public enum DeepSeekV2Family: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.deepseek2
    public static let hfModelTypes = ["deepseek_v2"]
    public static let ggufArchitectures = ["deepseek2"]

    /// No `attribute_map` in 4.57 or 5.x.
    public static let hfConfigClass = HFConfigClass("DeepseekV2Config")

    /// Defaults are DeepseekV2Config's (4.57 and 5.x agree).
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        if try hf.optionalBool("mlp_bias") == true { throw hf.invalid("mlp_bias true is not supported") }
        let method = try hf.optionalString("topk_method") ?? "greedy"
        hf.record("top-k method", method, key: try hf.spelling("topk_method") == nil ? nil : "topk_method")
        var groups: ModelConfiguration.Routing.Groups? = nil
        switch method {
        case "greedy": break
        case "group_limited_greedy":
            guard let count = try hf.optionalInt("n_group"), let used = try hf.optionalInt("topk_group") else {
                throw hf.invalid("topk_method group_limited_greedy needs n_group and topk_group")
            }
            hf.record("expert groups", "\(used) of \(count), scored by their best expert", key: "n_group")
            groups = .init(count: count, used: used, score: .max, masking: .zero)
        default:
            throw hf.invalid("topk_method \"\(ModelFormatError.shown(method))\" is not supported (greedy or group_limited_greedy)")
        }
        let routing = ModelConfiguration.Routing(
            scoring: .softmax, normalizeTopK: false,
            scale: Float(try hf.double("routed_scaling_factor", default: 1, as: "routed scaling factor")), groups: groups)
        return try DeepSeekHF.configuration(
            hf, architecture: .deepseek2, routing: routing, ropeStyle: .adjacentPairs,
            defaults: .init(experts: 64, topK: nil, shared: 2, firstDense: 0, context: 2048, queryRank: 1536))
    }

    public static func configuration(gguf g: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            g, vocabSize: vocabSize, tied: tied, ropeStyle: .adjacentPairs, normalizeTopK: false,
            expertFFNKey: "expert_feed_forward_length", checkValueLength: false)
        let nopeRope = try g.int("attention.key_length_mla"), rope = try g.int("rope.dimension_count")
        config.headDim = nopeRope
        config.ropeDimensions = rope
        config.kvHeadCount = config.headCount  // the converter writes 1 (MLA seen as MQA); attention has one key per head
        config.latentAttention = .init(
            queryRank: try g.optionalInt("attention.q_lora_rank") ?? 0, kvRank: try g.int("attention.kv_lora_rank"),
            nopeHeadDim: nopeRope - rope, ropeHeadDim: rope, valueHeadDim: try g.int("attention.value_length_mla"),
            normEpsilon: config.rmsNormEpsilon)
        if var scaling = config.ropeScaling, scaling.kind == .yarn, let all = scaling.mscaleAllDim {
            // llama.cpp's deepseek2 graph: kq_scale = mscale² / sqrt(d) with mscale from
            // yarn_log_multiplier (= 0.1 · mscale_all_dim), and the rope's own magnitude correction
            // cancelled, i.e. mscale = mscale_all_dim (attention factor 1), as the released configs have.
            scaling.mscale = all
            config.ropeScaling = scaling
            config.latentAttention?.softmaxScaleFactor = Float(scaling.softmaxScaleMultiplier)
        }
        try readGGUFMoE(g, into: &config, defaultScoring: .softmax)
        return config
    }

    /// The MoE keys `deepseek2` and `glm4moe` share, read as llama.cpp reads them.
    static func readGGUFMoE(_ g: GGUFMetadataReader, into config: inout ModelConfiguration, defaultScoring: ModelConfiguration.Routing.Scoring) throws {
        let dense = try g.optionalInt("leading_dense_block_count") ?? 0
        config.layerKinds = (0..<min(max(config.layerCount, 0), 1 << 12)).map { $0 < dense ? .dense : .moe }
        config.denseFFNSize = dense > 0 ? try g.int("feed_forward_length") : 0
        let shared = try g.int("expert_shared_count")
        config.sharedExpertCount = shared
        config.sharedExpertFFNSize = shared * config.expertFFNSize
        let gating = try g.optionalInt("expert_gating_func")
        switch gating {
        case nil: config.routing.scoring = defaultScoring
        case 1: config.routing.scoring = .softmax
        case 2: config.routing.scoring = .sigmoid
        case let other?:
            throw ModelFormatError.invalidMetadata(path: g.file.path, key: "\(g.architecture).expert_gating_func", reason: "gating function \(other) is not supported (1 softmax, 2 sigmoid)")
        }
        let scale = g.value("expert_weights_scale") == nil ? 0 : try g.double("expert_weights_scale", default: 0)
        config.routing.scale = scale == 0 ? 1 : Float(scale)  // llama.cpp: 0 (absent) means no scaling
        if let count = try g.optionalInt("expert_group_count"), count > 1 {
            config.routing.groups = .init(count: count, used: try g.int("expert_group_used_count"), score: .topTwoSum, masking: .exclude)
        }
        let firstMoE = config.layerKinds.firstIndex(of: .moe) ?? 0
        config.routing.selectionBias = g.file.tensor(WeightName.expertSelectionBias(firstMoE).ggufName) != nil ? true : nil
        config.provenance? += [
            .init(setting: "leading dense layers", value: "\(dense)", origin: g.value("leading_dense_block_count") == nil ? .default : .file, source: g.value("leading_dense_block_count") == nil ? "llama.cpp" : "\(g.architecture).leading_dense_block_count"),
            .init(setting: "scoring", value: config.routing.scoring.rawValue, origin: gating == nil ? .default : .file, source: gating == nil ? "llama.cpp" : "\(g.architecture).expert_gating_func"),
            .init(setting: "routed scaling factor", value: "\(config.routing.scale)", origin: scale == 0 ? .default : .file, source: scale == 0 ? "llama.cpp" : "\(g.architecture).expert_weights_scale"),
        ]
    }

    public static func hfName(_ name: WeightName) -> String { DeepSeekHF.hfName(name) }
}

/// What DeepSeek-V2, DeepSeek-V3 and GLM-4.5 checkpoints share: names and the MLA/MoE keys.
enum DeepSeekHF {
    /// The config class defaults that differ between DeepseekV2Config and DeepseekV3Config.
    struct Defaults {
        var experts: Int
        /// nil: the class has no usable default (V2's `num_experts_per_tok=None`).
        var topK: Int?
        var shared: Int
        var firstDense: Int
        var context: Int
        var queryRank: Int
    }

    static func hfName(_ name: WeightName) -> String {
        switch name {
        case let .sharedGate(l): return "model.layers.\(l).mlp.shared_experts.gate_proj.weight"
        case let .sharedUp(l): return "model.layers.\(l).mlp.shared_experts.up_proj.weight"
        case let .sharedDown(l): return "model.layers.\(l).mlp.shared_experts.down_proj.weight"
        default: return name.commonHFName ?? name.ggufName
        }
    }

    /// Layer kinds, shared experts and sizes of a DeepSeek-style MoE (`first_k_dense_replace`,
    /// `n_routed_experts`, `n_shared_experts`, `moe_intermediate_size`), filled into `config`.
    static func readMoE(_ hf: HFConfigReader, into config: inout ModelConfiguration, defaults d: Defaults) throws {
        let layers = config.layerCount
        let firstDense = try hf.int("first_k_dense_replace", default: d.firstDense, as: "leading dense layers")
        config.layerKinds = (0..<min(max(layers, 0), 1 << 12)).map { $0 < firstDense ? .dense : .moe }
        config.expertCount = try hf.int("n_routed_experts", default: d.experts, as: "experts")
        if let topK = d.topK {
            config.expertsPerToken = try hf.int("num_experts_per_tok", default: topK, as: "top-k")
        } else {
            config.expertsPerToken = try hf.int("num_experts_per_tok")
            hf.record("top-k", "\(config.expertsPerToken)", key: "num_experts_per_tok")
        }
        config.expertFFNSize = try hf.int("moe_intermediate_size")
        guard let shared = try hf.optionalInt("n_shared_experts", default: d.shared, as: "shared experts"), shared >= 1 else {
            throw hf.invalid("n_shared_experts must be at least 1 (the MoE block always runs its shared experts)")
        }
        config.sharedExpertCount = shared
        config.sharedExpertFFNSize = shared * config.expertFFNSize
        config.denseFFNSize = firstDense > 0 ? try hf.int("intermediate_size") : 0
    }

    /// DeepSeek-V2/V3 `config.json`: MLA shape, MoE layout and the common keys.
    static func configuration(
        _ hf: HFConfigReader, architecture: ModelConfiguration.Architecture, routing: ModelConfiguration.Routing,
        ropeStyle: ModelConfiguration.RopeStyle, defaults d: Defaults
    ) throws -> ModelConfiguration {
        try hf.requireSiLU()
        if try hf.optionalBool("attention_bias") == true { throw hf.invalid("attention_bias true is not supported for latent attention") }
        let heads = try hf.int("num_attention_heads")
        if let kv = try hf.optionalInt("num_key_value_heads"), kv != heads {
            throw hf.invalid("num_key_value_heads \(kv) differs from num_attention_heads \(heads); latent attention expands one key per head")
        }
        let nope = try hf.int("qk_nope_head_dim"), rope = try hf.int("qk_rope_head_dim")
        let (theta, scaling) = try hf.rope(defaultTheta: 10_000)
        // DeepSeek's attention multiplies its softmax scale by yarn_get_mscale(factor, mscale_all_dim)²:
        // V3 in 4.57 and 5.x, V2 only from 5.x on (4.57's DeepseekV2Attention does not), so for V2
        // the file's transformers_version decides, else the newer.
        let appliesMscale = architecture != .deepseek2 || (hf.transformersMajorVersion ?? 5) >= 5
        let softmaxFactor = appliesMscale ? Float(scaling?.softmaxScaleMultiplier ?? 1) : 1
        if scaling?.kind == .yarn { hf.record("softmax scale × mscale²", "\(softmaxFactor)", key: appliesMscale ? "rope_scaling.mscale_all_dim" : "transformers_version") }
        var latent = ModelConfiguration.LatentAttention(
            queryRank: try hf.optionalInt("q_lora_rank", default: d.queryRank, as: "q_lora_rank") ?? 0,
            kvRank: try hf.int("kv_lora_rank"), nopeHeadDim: nope, ropeHeadDim: rope, valueHeadDim: try hf.int("v_head_dim"),
            normEpsilon: 1e-6)  // q_a_layernorm and kv_a_layernorm take RMSNorm's default eps, not rms_norm_eps
        latent.softmaxScaleFactor = softmaxFactor
        var config = ModelConfiguration(
            architecture: architecture, vocabSize: try hf.int("vocab_size"), hiddenSize: try hf.int("hidden_size"),
            layerCount: try hf.int("num_hidden_layers"), headCount: heads, kvHeadCount: heads, headDim: nope + rope,
            ropeTheta: theta, ropeStyle: ropeStyle, ropeDimensions: rope,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-6, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: d.context, as: "context"),
            expertCount: 0, expertsPerToken: 0, expertFFNSize: 0, routing: routing,
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
        config.latentAttention = latent
        config.ropeScaling = scaling
        try readMoE(hf, into: &config, defaults: d)
        return config
    }
}
