import Executor
import ExpertStore
import Foundation
import ModelFormats
import Router
import Synchronization

/// What every routed expert saw during `moe calibrate`'s routing pass: per-column sums of
/// squares of its inputs (llama.cpp's imatrix), of the SwiGLU output its down projection
/// multiplies, and of the two SwiGLU branch gains, plus how often it was used. One pass over
/// the calibration text gathers it whatever the number of experts; `moe convert` turns it into
/// activation-aware quantization (``importance(layer:expert:)``) and the proxy sensitivities
/// (``ProxySensitivity``) need no further model run.
///
/// Sums are Float, accumulated window by window in a fixed order, so a resumed gathering
/// gives the same bits as an uninterrupted one. Memory: experts × (hidden + 3 × FFN) floats
/// (70 MB for 48 × 128 experts of 2048 × 768), small next to the experts themselves.
public struct ActivationStatistics: Sendable, Equatable {
    public static let format = "swiftmoe-activations"
    public static let version = 1

    /// What was gathered on what: a gathering resumes only with equal settings.
    public struct Settings: Codable, Sendable, Equatable {
        public var model: String
        public var modelFingerprint: String
        public var text: String
        /// XXH64 of all the text's token ids (32-bit), and how many there are.
        public var tokensHash: String
        public var totalTokens: Int
        /// Windows of this many tokens, each from an empty context.
        public var context: Int

        public init(model: String, modelFingerprint: String, text: String, tokensHash: String, totalTokens: Int, context: Int) {
            self.model = model
            self.modelFingerprint = modelFingerprint
            self.text = text
            self.tokensHash = tokensHash
            self.totalTokens = totalTokens
            self.context = context
        }
    }

    public var settings: Settings
    /// MoE layers, in order, and the shape of each expert.
    public var layers: [Int]
    public var expertCount: Int
    public var hiddenSize: Int
    public var ffnSize: Int
    /// Tokens of the text routed so far (equal to `settings.totalTokens` when complete).
    public var tokens: Int
    /// Tokens routed to each expert, `uses[i][e]` for the i-th MoE layer.
    public var uses: [[Int]]
    /// Σ of the router weight squared over those tokens.
    public var routerWeightSquares: [[Float]]
    /// Per expert, per column: Σ x² of its inputs (`hiddenSize` each), Σ h² of its down
    /// projection's inputs h = silu(g)·u, Σ silu(g)² and Σ (silu′(g)·u)² (`ffnSize` each).
    /// Flat, expert (layer index × expertCount + expert) major.
    public var inputSquares: [Float]
    public var hiddenSquares: [Float]
    public var upGain: [Float]
    public var gateGain: [Float]

    public init(settings: Settings, layers: [Int], expertCount: Int, hiddenSize: Int, ffnSize: Int) {
        self.settings = settings
        self.layers = layers
        self.expertCount = expertCount
        self.hiddenSize = hiddenSize
        self.ffnSize = ffnSize
        tokens = 0
        uses = layers.map { _ in [Int](repeating: 0, count: expertCount) }
        routerWeightSquares = layers.map { _ in [Float](repeating: 0, count: expertCount) }
        let experts = layers.count * expertCount
        inputSquares = [Float](repeating: 0, count: experts * hiddenSize)
        hiddenSquares = [Float](repeating: 0, count: experts * ffnSize)
        upGain = hiddenSquares
        gateGain = hiddenSquares
    }

    public var isComplete: Bool { tokens >= settings.totalTokens }

    /// The flat index of the expert (`layer` is a model layer index).
    func slot(layer: Int, expert: Int) -> Int? {
        guard let i = layers.firstIndex(of: layer), expert >= 0, expert < expertCount else { return nil }
        return i * expertCount + expert
    }

    /// Adds one pass's activations of one expert (``ExpertActivations``).
    mutating func add(_ a: ExpertActivations) {
        guard let slot = slot(layer: a.layer, expert: a.expert) else { return }
        let i = slot / expertCount, e = slot % expertCount
        uses[i][e] += a.tokens
        for w in a.routerWeights { routerWeightSquares[i][e] += w * w }
        let h = hiddenSize, f = ffnSize
        inputSquares.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress! + slot * h
            for t in 0..<a.tokens {
                let x = a.input + t * h
                for c in 0..<h { o[c] += x[c] * x[c] }
            }
        }
        hiddenSquares.withUnsafeMutableBufferPointer { hs in
            upGain.withUnsafeMutableBufferPointer { ug in
                gateGain.withUnsafeMutableBufferPointer { gg in
                    let ho = hs.baseAddress! + slot * f, uo = ug.baseAddress! + slot * f, go = gg.baseAddress! + slot * f
                    for t in 0..<a.tokens {
                        let g = a.gate + t * f, u = a.up + t * f, hid = a.hidden + t * f
                        for c in 0..<f {
                            ho[c] += hid[c] * hid[c]
                            let s = 1 / (1 + expf(-g[c]))
                            let silu = g[c] * s
                            uo[c] += silu * silu
                            let dsilu = s * (1 + g[c] * (1 - s)) * u[c]
                            go[c] += dsilu * dsilu
                        }
                    }
                }
            }
        }
    }

    /// llama.cpp's imatrix entries for one expert: the mean squares of its gate/up inputs and
    /// of its down projection's inputs. An expert the text never routed to gets its layer's
    /// pooled means (every token of the layer); nil when the whole layer saw nothing.
    public func importance(layer: Int, expert: Int) -> ExpertImportance? {
        guard let slot = slot(layer: layer, expert: expert) else { return nil }
        let i = slot / expertCount
        let n = uses[i][slot % expertCount]
        if n > 0 {
            let scale = 1 / Float(n)
            return ExpertImportance(input: inputSquares[(slot * hiddenSize)..<((slot + 1) * hiddenSize)].map { $0 * scale },
                                    hidden: hiddenSquares[(slot * ffnSize)..<((slot + 1) * ffnSize)].map { $0 * scale })
        }
        let total = uses[i].reduce(0, +)
        guard total > 0 else { return nil }
        var input = [Float](repeating: 0, count: hiddenSize), hidden = [Float](repeating: 0, count: ffnSize)
        for e in 0..<expertCount {
            let s = i * expertCount + e
            for c in 0..<hiddenSize { input[c] += inputSquares[s * hiddenSize + c] }
            for c in 0..<ffnSize { hidden[c] += hiddenSquares[s * ffnSize + c] }
        }
        let scale = 1 / Float(total)
        return ExpertImportance(input: input.map { $0 * scale }, hidden: hidden.map { $0 * scale })
    }

    /// ``importance(layer:expert:)`` for every expert, as `moe convert` takes it.
    public func importanceTable() -> [ExpertKey: ExpertImportance] {
        var table: [ExpertKey: ExpertImportance] = [:]
        for l in layers {
            for e in 0..<expertCount { table[ExpertKey(layer: l, expert: e)] = importance(layer: l, expert: e) }
        }
        return table
    }
}

/// Gathers ``ActivationStatistics`` from a transformer's ``ExpertActivationObserver`` calls,
/// which come one at a time from the pass's thread.
final class ActivationAccumulator: Sendable {
    let state: Mutex<ActivationStatistics>

    init(_ start: ActivationStatistics) { state = Mutex(start) }

    func add(_ view: ExpertActivations) { state.withLock { $0.add(view) } }

    var statistics: ActivationStatistics { state.withLock { $0 } }

    func setTokens(_ n: Int) { state.withLock { $0.tokens = n } }
}
