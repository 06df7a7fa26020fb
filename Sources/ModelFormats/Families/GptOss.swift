import Foundation
import Quantization

/// GPT-OSS (`GptOssForCausalLM`, gpt-oss-20b/120b; GGUF `gpt-oss`).
///
/// Attention: q/k/v/o biases, one learned sink logit per query head, even layers within a
/// sliding window and odd layers over everything (`layer_types`), YaRN RoPE (half-split).
/// Routing: the router (with a bias) picks the top-k logits and softmaxes over those k, which
/// equals softmax over all experts renormalised over the k (`.softmax`, `normalizeTopK`).
/// Experts: biases on gate, up and down; the clamped SwiGLU `(clamp(up, ±limit) + 1) · g ·
/// sigmoid(alpha · g)` with `g = min(gate, limit)`; weights in MXFP4.
///
/// Hugging Face checkpoints store each layer's experts as `mlp.experts.gate_up_proj_blocks`
/// (uint8 `[E, 2·ffn, hidden/32, 16]`: two FP4 codes per byte, the low nibble first) with
/// `_scales` (uint8 `[E, 2·ffn, hidden/32]`, exponent + 127), gate and up interleaved by row, and
/// `down_proj_blocks`/`_scales` likewise; transformers' `convert_moe_packed_tensors` reads
/// them. ``hfTensor(_:in:)`` repacks one expert's rows into ggml's MXFP4 blocks (scale byte, then
/// byte j = code j | code j+16 << 4) — the same values, no requantization.
public enum GptOssFamily: ModelFamily {
    public static let architecture = ModelConfiguration.Architecture.gptoss
    public static let hfModelTypes = ["gpt_oss"]
    public static let ggufArchitectures = ["gpt-oss"]

    /// 5.x maps `num_experts` to `num_local_experts`; 4.57 had no alias.
    public static let hfConfigClass = HFConfigClass("GptOssConfig", attributeMap: ["num_experts": "num_local_experts"])

    /// GptOssConfig's default `rope_scaling` (4.57) / `rope_parameters` (5.x).
    static let defaultRope = ModelConfiguration.RopeScaling(kind: .yarn, factor: 32, originalContextLength: 4096, betaFast: 32, betaSlow: 1, truncate: false)

    /// Defaults are GptOssConfig's (4.57.6 and 5.x agree on every one read here).
    public static func configuration(hf: HFConfigReader) throws -> ModelConfiguration {
        let hidden = try hf.int("hidden_size")
        let heads = try hf.int("num_attention_heads")
        let layers = try hf.int("num_hidden_layers")
        let rope = try gptOssRope(hf)
        // Absent layer_types: GptOssConfig slides the even layers.
        let fileTypes = try hf.layerTypes(layers: layers)
        let types = fileTypes ?? (0..<min(max(layers, 0), ModelConfiguration.limits.layers)).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
        let sliding = types.indices.filter { types[$0] == "sliding_attention" }
        hf.record("sliding layers", sliding.count <= 8 ? "\(sliding)" : "\(sliding.count) of \(types.count)", key: fileTypes == nil ? nil : "layer_types")
        let window = try hf.optionalInt("sliding_window", default: 128, as: "sliding window")
        var config = ModelConfiguration(
            architecture: .gptoss, vocabSize: try hf.int("vocab_size"), hiddenSize: hidden, layerCount: layers,
            headCount: heads, kvHeadCount: try hf.kvHeads(default: 8, heads: heads),
            headDim: try hf.int("head_dim", default: 64, as: "head dim"),
            ropeTheta: rope.theta, ropeScaling: rope.scaling, ropeStyle: .halfSplit,
            rmsNormEpsilon: Float(try hf.double("rms_norm_eps", default: 1e-5, as: "rms eps")),
            contextLength: try hf.int("max_position_embeddings", default: 131_072, as: "context"),
            attentionBias: true, slidingWindow: window,
            expertCount: try hf.int("num_local_experts", default: 128, as: "experts"),
            expertsPerToken: try hf.int("num_experts_per_tok", default: 4, as: "top-k"),
            expertFFNSize: try hf.int("intermediate_size"),
            routing: .init(normalizeTopK: true),  // GptOssTopKRouter: softmax over the top-k logits; no key
            tiedEmbeddings: try hf.bool("tie_word_embeddings", default: false, as: "tied embeddings"))
        config.slidingLayers = types.map { $0 == "sliding_attention" }
        config.attentionSinks = true
        config.attentionOutputBias = true
        config.expertBiases = true
        config.expertActivation = try activation(hf)
        return config
    }

    /// The theta and scaling; a file without any RoPE key gets GptOssConfig's YaRN default.
    /// An explicit `rope_scaling: null` means the default RoPE to 4.57 and the default YaRN to
    /// 5.x (`rope_parameters` null is filled in); the file's `transformers_version` decides.
    static func gptOssRope(_ hf: HFConfigReader) throws -> (theta: Double, scaling: ModelConfiguration.RopeScaling?) {
        let mentioned = hf.values["rope_scaling"] != nil || hf.values["rope_parameters"] != nil
        let rope = try hf.rope(defaultTheta: 150_000)
        guard rope.scaling == nil else { return rope }
        let explicitNone = mentioned && (hf.transformersMajorVersion ?? 5) < 5
        guard !explicitNone else { return rope }
        hf.record("rope scaling", defaultRope.description, key: nil)
        return (rope.theta, defaultRope)
    }

    /// transformers 4.57's GptOssExperts fixes alpha 1.702 and limit 7.0 (ignoring the
    /// config); 5.x reads `swiglu_alpha`/`swiglu_limit` with those defaults.
    static func activation(_ hf: HFConfigReader) throws -> ModelConfiguration.ClampedSwiGLU {
        if let major = hf.transformersMajorVersion, major < 5 {
            hf.record("swiglu alpha", "1.702", key: nil)
            hf.record("swiglu limit", "7", key: nil)
            return .init(alpha: 1.702, limit: 7)
        }
        return .init(alpha: Float(try hf.double("swiglu_alpha", default: 1.702, as: "swiglu alpha")),
                     limit: Float(try hf.double("swiglu_limit", default: 7, as: "swiglu limit")))
    }

    public static func configuration(gguf g: GGUFMetadataReader, vocabSize: Int, tied: Bool) throws -> ModelConfiguration {
        var config = try commonGGUFConfiguration(
            g, vocabSize: vocabSize, tied: tied, ropeStyle: .halfSplit, normalizeTopK: true,
            expertFFNKey: "expert_feed_forward_length")
        config.attentionBias = true
        config.slidingWindow = try g.int("attention.sliding_window")  // llama.cpp requires it
        // llama.cpp: `attention.sliding_window_pattern` as one flag per layer, or a period n
        // (default 2) sliding every layer with il % n < n - 1.
        let patternKey = "attention.sliding_window_pattern"
        if let flags = g.value(patternKey)?.array {
            config.slidingLayers = try flags.map {
                guard let b = $0.bool else {
                    throw ModelFormatError.invalidMetadata(path: g.file.path, key: "\(g.architecture).\(patternKey)", reason: "expected booleans")
                }
                return b
            }
        } else {
            let n = try g.optionalInt(patternKey) ?? 2
            config.slidingLayers = (0..<min(max(config.layerCount, 0), ModelConfiguration.limits.layers)).map { n == 0 || $0 % n < n - 1 }
        }
        config.provenance?.append(.init(setting: "sliding window", value: "\(config.slidingWindow ?? 0)", origin: .file, source: "\(g.architecture).attention.sliding_window"))
        config.attentionSinks = true
        config.attentionOutputBias = true
        config.expertBiases = true
        // llama.cpp's LLM_FFN_SWIGLU_OAI_MOE: alpha 1.702, limit 7 (no key).
        config.expertActivation = .init(alpha: 1.702, limit: 7)
        return config
    }

    public static func ggufName(_ name: WeightName) -> String {
        if case let .ffnNorm(l) = name { return "blk.\(l).post_attention_norm.weight" }
        return name.ggufName
    }

    public static func hfName(_ name: WeightName) -> String {
        switch name {
        case let .router(l): return "model.layers.\(l).mlp.router.weight"
        case let .routerBias(l): return "model.layers.\(l).mlp.router.bias"
        case let .attentionSinks(l): return "model.layers.\(l).self_attn.sinks"
        case let .expertDownBias(l): return "model.layers.\(l).mlp.experts.down_proj_bias"
        case let .expertGateBias(l), let .expertUpBias(l): return "model.layers.\(l).mlp.experts.gate_up_proj_bias"
        case let .expertGate(l, e), let .expertUp(l, e): return "model.layers.\(l).mlp.experts.gate_up_proj_blocks (expert \(e))"
        case let .expertDown(l, e): return "model.layers.\(l).mlp.experts.down_proj_blocks (expert \(e))"
        default: return name.commonHFName ?? name.ggufName
        }
    }

    public static func hfTensor(_ name: WeightName, in directory: HFDirectory) throws -> TensorView? {
        switch name {
        case let .expertGate(l, e): return try mxfp4Expert(directory, "model.layers.\(l).mlp.experts.gate_up_proj", expert: e, rows: .even, name: name)
        case let .expertUp(l, e): return try mxfp4Expert(directory, "model.layers.\(l).mlp.experts.gate_up_proj", expert: e, rows: .odd, name: name)
        case let .expertDown(l, e): return try mxfp4Expert(directory, "model.layers.\(l).mlp.experts.down_proj", expert: e, rows: .all, name: name)
        case let .expertGateBias(l): return try interleavedBias(directory, l, odd: false, name: name)
        case let .expertUpBias(l): return try interleavedBias(directory, l, odd: true, name: name)
        default: return nil
        }
    }

    enum Rows { case even, odd, all }

    /// Expert `expert`'s rows of `<prefix>_blocks`/`_scales` as a ggml MXFP4 tensor `[cols, rows]`.
    static func mxfp4Expert(_ directory: HFDirectory, _ prefix: String, expert e: Int, rows selection: Rows, name: WeightName) throws -> TensorView? {
        guard let blocks = directory.raw(prefix + "_blocks"), let scales = directory.raw(prefix + "_scales") else {
            if directory.raw(prefix) != nil || (try? directory.tensor(prefix)) != nil {
                throw ModelFormatError.unsupportedType(tensor: prefix, type: "unquantized GPT-OSS experts (only the MXFP4 blocks + scales checkpoints are read)")
            }
            return nil
        }
        let bs = blocks.entry.shape, ss = scales.entry.shape
        guard blocks.entry.dtype == "U8", scales.entry.dtype == "U8", bs.count == 4, bs[3] == 16, ss == Array(bs.prefix(3)), e >= 0, e < bs[0] else {
            throw ModelFormatError.invalidTensor(path: directory.path, tensor: prefix + "_blocks",
                                                 reason: "expected uint8 blocks [experts, rows, groups, 16] and scales [experts, rows, groups] holding expert \(e), found \(bs) and \(ss)")
        }
        let allRows = bs[1], groups = bs[2]
        let picked: [Int]
        switch selection {
        case .all: picked = Array(0..<allRows)
        case .even: picked = Array(stride(from: 0, to: allRows, by: 2))
        case .odd: picked = Array(stride(from: 1, to: allRows, by: 2))
        }
        let out = OwnedBytes(count: picked.count * groups * 17)
        let b = blocks.bytes, s = scales.bytes
        for (i, r) in picked.enumerated() {
            for g in 0..<groups {
                let src = ((e * allRows + r) * groups + g)
                let dst = out.pointer + (i * groups + g) * 17
                dst[0] = s[src]
                // HF: byte j holds codes 2j (low) and 2j+1 (high); ggml: byte j holds codes j and j+16.
                var codes = [UInt8](repeating: 0, count: 32)
                for j in 0..<16 {
                    let byte = b[src * 16 + j]
                    codes[2 * j] = byte & 0x0F
                    codes[2 * j + 1] = byte >> 4
                }
                for j in 0..<16 { dst[1 + j] = codes[j] | (codes[j + 16] << 4) }
            }
        }
        return TensorView(name: hfName(name), type: .mxfp4, shape: [groups * 32, picked.count], data: out.buffer, owner: out)
    }

    /// Gate (even) or up (odd) entries of `gate_up_proj_bias` `[E, 2·ffn]`, as `[ffn, E]` f32.
    static func interleavedBias(_ directory: HFDirectory, _ l: Int, odd: Bool, name: WeightName) throws -> TensorView? {
        let key = "model.layers.\(l).mlp.experts.gate_up_proj_bias"
        guard let view = try directory.tensor(key) else { return nil }
        guard view.shape.count == 2, view.shape[0] % 2 == 0 else {
            throw ModelFormatError.invalidTensor(path: directory.path, tensor: key, reason: "expected [experts, 2 × ffn], found \(Array(view.shape.reversed()))")
        }
        let all = try view.toFloats()
        let width = view.shape[0], experts = view.shape[1]
        let out = OwnedBytes(count: width / 2 * experts * 4)
        let raw = UnsafeMutableRawPointer(out.pointer)
        for e in 0..<experts {
            for i in 0..<(width / 2) {
                raw.storeBytes(of: all[e * width + 2 * i + (odd ? 1 : 0)], toByteOffset: 4 * (e * width / 2 + i), as: Float.self)
            }
        }
        return TensorView(name: key + (odd ? " (up)" : " (gate)"), type: .f32, shape: [width / 2, experts], data: out.buffer, owner: out)
    }
}

/// Bytes built at load (repacked MXFP4 experts, de-interleaved biases) that tensor views point into.
///
/// `@unchecked Sendable`: the memory is written only while the owning family builds the view,
/// before any view exists, and freed in `deinit`, when no view holds the owner any more.
final class OwnedBytes: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt8>
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    deinit { pointer.deallocate() }
}
