import ExpertStore
import Quantization
import Router

public enum ExecutorError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(token: Int, position: Int, vocabSize: Int)
    case contextFull(needed: Int, limit: Int)
    case emptyInput
    /// Another forward pass was running on the same transformer and its options say
    /// ``ExecutorOptions/ConcurrentUse/reject``.
    case busy

    public var description: String {
        switch self {
        case let .tokenOutOfRange(token, position, vocab):
            return "token id \(token) at position \(position) is outside the vocabulary (0..<\(vocab))"
        case let .contextFull(needed, limit):
            return "the context would hold \(needed) positions, more than its limit of \(limit)"
        case .emptyInput:
            return "no tokens to evaluate"
        case .busy:
            return "another forward pass is running on this model (it rejects concurrent use)"
        }
    }
}

/// Called for every token of every MoE layer with the experts the router chose.
/// `position` is the token's absolute position in the sequence. It runs on the thread that
/// called ``Transformer/forward(tokens:cache:logits:observer:)``, while the transformer is
/// locked: it must not call back into the same transformer.
public typealias RoutingObserver = (_ layer: Int, _ position: Int, _ choices: [ExpertChoice]) -> Void

/// What one routed expert computed for the tokens routed to it in one pass: its inputs, the
/// gate and up projections, and the SwiGLU output that is the down projection's input, each
/// `tokens` rows (token-major), and the router weight of each token. Valid only during the call.
public struct ExpertActivations {
    public var layer: Int
    public var expert: Int
    public var tokens: Int
    /// `tokens × hiddenSize` floats.
    public var input: UnsafePointer<Float>
    /// `tokens × expertFFNSize` floats each.
    public var gate: UnsafePointer<Float>
    public var up: UnsafePointer<Float>
    public var hidden: UnsafePointer<Float>
    public var routerWeights: [Float]
}

/// Called once per routed expert and pass with what it computed (``ExpertActivations``): how
/// `moe calibrate` gathers activation statistics in its routing pass. While set, every pass
/// takes the batched (prefill) expert path, one token included. It runs on the pass's thread
/// while the transformer is locked and must not call back into the transformer.
public typealias ExpertActivationObserver = @Sendable (ExpertActivations) -> Void

/// Wall-clock times of one layer of one forward pass (`DispatchTime` uptime nanoseconds), for
/// traces. The FFN span includes any wait for experts the store had to load.
public struct LayerTiming: Sendable, Equatable {
    public var layer: Int
    /// Tokens in the pass and the position of the first.
    public var tokens: Int
    public var position: Int
    public var attentionStart: UInt64
    public var ffnStart: UInt64
    public var ffnEnd: UInt64
}

/// Tunable execution settings.
public struct ExecutorOptions: Sendable {
    /// What a forward pass does when another one is running on the same transformer.
    public enum ConcurrentUse: String, Sendable, CaseIterable {
        /// Wait for it: passes run one after the other (the default).
        case wait
        /// Throw ``ExecutorError/busy``.
        case reject
    }

    /// Worker threads (including the caller). More threads help until memory bandwidth is saturated.
    public var threads: Int
    /// `fast`: llama.cpp-style 8-bit activations for block-quantized weights. `reference`:
    /// dequantize and compute in f32 (slow; logits match transformers to 1e-4).
    public var kernels: KernelPath
    /// Element type of the KV cache: f16 halves its memory, f32 is exact.
    public var kvCacheType: KVCache.ElementType
    public var concurrentUse: ConcurrentUse
    /// Sees every routed expert's activations (``ExpertActivationObserver``); nil in normal runs.
    public var expertActivations: ExpertActivationObserver?
    /// The most tokens one forward pass computes at once: a longer prompt runs in chunks of this
    /// many (nil: any length in one pass). `Model` sets it from its memory plan, whose scratch
    /// is sized for one chunk (docs/design.md §5, *Prefill in waves*). Logits do not depend on it.
    public var promptChunk: Int?
    /// Missing experts a prefill wave reads ahead of the one computing (0: none; each is read
    /// on demand when its turn comes). More keeps the disk busy and takes pool room earlier.
    public var readAhead: Int

    /// The default ``readAhead``: the next expert while one computes, and one more.
    public static let defaultReadAhead = 2

    public init(threads: Int = ThreadPool.defaultThreadCount, kernels: KernelPath = .fast, kvCacheType: KVCache.ElementType = .f16,
                concurrentUse: ConcurrentUse = .wait, promptChunk: Int? = nil, readAhead: Int = ExecutorOptions.defaultReadAhead) {
        self.readAhead = max(0, readAhead)
        self.threads = max(1, threads)
        self.kernels = kernels
        self.kvCacheType = kvCacheType
        self.concurrentUse = concurrentUse
        self.promptChunk = promptChunk.map { max(1, $0) }
    }
}
