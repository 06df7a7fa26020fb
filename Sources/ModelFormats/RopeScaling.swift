import Foundation

extension ModelConfiguration {
    /// How a model stretches its rotary embeddings past the context it was trained on, as
    /// transformers' `modeling_rope_utils.py` (4.57 and 5.x) and llama.cpp define it. Nil in a
    /// configuration means the default RoPE. The frequencies themselves are computed by the
    /// executor's `Rope` (Sources/Executor/Rope.swift); this is only the description.
    public struct RopeScaling: Codable, Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Codable, Sendable {
            /// Every inverse frequency divided by `factor` (transformers `linear`, llama.cpp `linear`).
            case linear
            /// YaRN: interpolation for slow dimensions, extrapolation for fast ones, a ramp between,
            /// and an attention factor on cos/sin (transformers `yarn`, llama.cpp `yarn`).
            case yarn
            /// Llama 3.1's wavelength bands (transformers `llama3`; llama.cpp bakes it into a
            /// `rope_freqs` tensor instead).
            case llama3
        }

        public var kind: Kind
        public var factor: Double
        /// The context the model was pretrained with (YaRN's correction range, llama3's bands).
        /// Nil: the configuration's `contextLength` (transformers' fallback to
        /// `max_position_embeddings`; llama.cpp's to `context_length`).
        public var originalContextLength: Int?
        /// YaRN: rotations bounding the ramp (transformers' defaults 32 and 1).
        public var betaFast: Double
        public var betaSlow: Double
        /// YaRN: round the correction range outwards to whole dimensions (transformers' default
        /// true; llama.cpp always does).
        public var truncate: Bool
        /// YaRN: the factor on cos and sin when the file gives one (`attention_factor`); nil
        /// derives it from `factor`, `mscale` and `mscaleAllDim` as transformers does.
        public var attentionFactor: Double?
        /// YaRN (DeepSeek): `mscale` and `mscale_all_dim` of the config.
        public var mscale: Double?
        public var mscaleAllDim: Double?
        /// YaRN: how much of the extrapolated frequency is mixed in (llama.cpp's `yarn_ext_factor`;
        /// transformers has no such key and uses 1).
        public var extrapolationFactor: Double
        /// llama3: the band edges.
        public var lowFrequencyFactor: Double?
        public var highFrequencyFactor: Double?

        public init(kind: Kind, factor: Double, originalContextLength: Int? = nil, betaFast: Double = 32, betaSlow: Double = 1,
                    truncate: Bool = true, attentionFactor: Double? = nil, mscale: Double? = nil, mscaleAllDim: Double? = nil,
                    extrapolationFactor: Double = 1, lowFrequencyFactor: Double? = nil, highFrequencyFactor: Double? = nil) {
            self.kind = kind
            self.factor = factor
            self.originalContextLength = originalContextLength
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.truncate = truncate
            self.attentionFactor = attentionFactor
            self.mscale = mscale
            self.mscaleAllDim = mscaleAllDim
            self.extrapolationFactor = extrapolationFactor
            self.lowFrequencyFactor = lowFrequencyFactor
            self.highFrequencyFactor = highFrequencyFactor
        }

        /// YaRN's magnitude correction `0.1 · m · ln(scale) + 1` (1 when `scale <= 1`), as
        /// transformers' `get_mscale` and DeepSeek's `yarn_get_mscale` compute it.
        public static func yarnMscale(_ scale: Double, _ m: Double = 1) -> Double {
            scale <= 1 ? 1 : 0.1 * m * log(scale) + 1
        }

        /// The factor cos and sin are multiplied by (so attention logits by its square): YaRN's
        /// `attention_factor`, explicit or derived as transformers derives it; 1 otherwise.
        public var resolvedAttentionFactor: Double {
            guard kind == .yarn else { return 1 }
            if let attentionFactor { return attentionFactor }
            if let mscale, let mscaleAllDim, mscale != 0, mscaleAllDim != 0 {
                return Self.yarnMscale(factor, mscale) / Self.yarnMscale(factor, mscaleAllDim)
            }
            return Self.yarnMscale(factor)
        }

        /// DeepSeek-V2/V3 attention also multiplies its softmax scale by
        /// `yarnMscale(factor, mscale_all_dim)²` (`DeepseekV3Attention.scaling`); 1 without `mscale_all_dim`.
        public var softmaxScaleMultiplier: Double {
            guard kind == .yarn, let mscaleAllDim, mscaleAllDim != 0 else { return 1 }
            let m = Self.yarnMscale(factor, mscaleAllDim)
            return m * m
        }

        /// `yarn factor 32, original context 4096, beta 32/1, untruncated, attention ×1.347`.
        public var description: String {
            var parts = ["\(kind.rawValue) factor \(HFConfigReader.show(factor))"]
            if let originalContextLength { parts.append("original context \(originalContextLength)") }
            switch kind {
            case .yarn:
                parts.append("beta \(HFConfigReader.show(betaFast))/\(HFConfigReader.show(betaSlow))")
                if !truncate { parts.append("untruncated") }
                if extrapolationFactor != 1 { parts.append("extrapolation \(HFConfigReader.show(extrapolationFactor))") }
                parts.append(String(format: "attention ×%.4g", resolvedAttentionFactor))
            case .llama3:
                parts.append("bands \(lowFrequencyFactor.map(HFConfigReader.show) ?? "?")/\(highFrequencyFactor.map(HFConfigReader.show) ?? "?")")
            case .linear:
                break
            }
            return parts.joined(separator: ", ")
        }

        /// Checks the values describe frequencies `Rope` can compute.
        func validate(_ fail: (String) -> Error) throws {
            guard factor.isFinite, factor > 0 else { throw fail("rope scaling factor \(factor) must be positive") }
            if let originalContextLength, originalContextLength < 1 {
                throw fail("rope scaling original context \(originalContextLength) must be positive")
            }
            switch kind {
            case .yarn:
                guard betaFast.isFinite, betaSlow.isFinite, betaFast > 0, betaSlow > 0 else {
                    throw fail("YaRN beta_fast \(betaFast) and beta_slow \(betaSlow) must be positive")
                }
                for (name, value) in [("attention_factor", attentionFactor), ("mscale", mscale), ("mscale_all_dim", mscaleAllDim)] {
                    if let value, !value.isFinite { throw fail("YaRN \(name) \(value) must be finite") }
                }
                guard extrapolationFactor.isFinite, (0...1).contains(extrapolationFactor) else {
                    throw fail("YaRN extrapolation factor \(extrapolationFactor) must be within 0...1")
                }
            case .llama3:
                guard let low = lowFrequencyFactor, let high = highFrequencyFactor, originalContextLength != nil,
                      low.isFinite, high.isFinite, low > 0, high > low else {
                    throw fail("llama3 rope scaling needs low_freq_factor < high_freq_factor, both positive, and original_max_position_embeddings")
                }
            case .linear:
                break
            }
        }
    }
}
