import ModelFormats
import Quantization

/// Scratch memory of the forward passes, allocated once per transformer and grown when a pass
/// has more tokens than any before it (decode after a prompt chunk reuses the chunk's memory).
/// Each use has a named slot. No slot is cleared between passes: every reader of a slot writes
/// it first in the same pass.
final class Workspace {
    /// Floats whose capacity only grows.
    final class Buffer {
        private(set) var pointer: UnsafeMutablePointer<Float>
        private(set) var capacity = 1

        init() {
            pointer = .allocate(capacity: 1)
            pointer.initialize(to: 0)
        }

        deinit { pointer.deallocate() }

        /// At least `count` floats (contents undefined after growing).
        @discardableResult
        func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
            if count > capacity {
                pointer.deallocate()
                capacity = count
                pointer = .allocate(capacity: count)
                pointer.initialize(repeating: 0, count: count)
            }
            return pointer
        }
    }

    /// An activation batch of a fixed width whose token capacity only grows.
    final class BatchSlot {
        let width: Int
        private var batch: ActivationBatch

        init(width: Int) {
            self.width = width
            batch = ActivationBatch(width: width, capacity: 1)
        }

        /// The batch, reset to hold `tokens` tokens (their quantization is stale).
        func reset(tokens: Int) -> ActivationBatch {
            if batch.capacity < tokens { batch = ActivationBatch(width: width, capacity: tokens) }
            batch.reset(tokens: tokens)
            return batch
        }
    }

    /// Per-worker state of attention's online softmax: a maximum and a sum per query head of
    /// a group.
    final class SoftmaxState {
        var maxima: [Float]
        var sums: [Float]
        init(group: Int) {
            maxima = Array(repeating: 0, count: group)
            sums = Array(repeating: 0, count: group)
        }
    }

    private let configuration: ModelConfiguration

    // Per-token slots, sized in `reserve(tokens:)` for the pass.
    /// The residual stream, `hiddenSize` per token.
    let residual = Buffer()
    /// Query, key and value projections (`queryDim`, `kvDim`, `kvDim` per token).
    let query = Buffer(), key = Buffer(), value = Buffer()
    /// The attention block's output, added to the residual.
    let attentionOutput = Buffer()
    /// The feed-forward block's output, added to the residual.
    let ffnOutput = Buffer()
    /// Router logits (`expertCount` per token), or the shared expert's gate logit.
    let routerLogits = Buffer()
    /// Latent attention: per token and head, the query absorbed into latent space and the
    /// attention-weighted latent (`kvRank` each).
    let latentQuery = Buffer(), latentOutput = Buffer()
    /// The normalized residual: the attention input, and at the end the output norm's result.
    let normed: BatchSlot
    /// Attention's per-head results, the input of its output projection.
    let attended: BatchSlot
    /// The feed-forward input (normalized residual).
    let ffnInput: BatchSlot

    // Feed-forward slots, sized by the tokens of one MLP call.
    /// The tokens routed to one expert, gathered contiguously (prefill).
    let gathered: BatchSlot
    /// Gate, up and down projection outputs of a SwiGLU MLP.
    let gateOutput = Buffer(), upOutput = Buffer(), downOutput = Buffer()
    /// SwiGLU hidden activations by intermediate size.
    private var hidden: [Int: BatchSlot] = [:]
    /// One token's normalized residual for a lookahead gate (prefetch).
    let lookaheadInput: BatchSlot

    // Per-worker slots.
    private let scratchWidth: Int
    private let scratchBase: UnsafeMutablePointer<Float>
    private let softmax: [SoftmaxState]

    init(configuration c: ModelConfiguration, threads: Int) {
        configuration = c
        let h = c.hiddenSize
        normed = BatchSlot(width: h)
        attended = BatchSlot(width: c.attentionOutputDim)
        ffnInput = BatchSlot(width: h)
        gathered = BatchSlot(width: h)
        lookaheadInput = BatchSlot(width: h)
        scratchWidth = max(h, c.queryDim, c.attentionOutputDim, c.expertFFNSize, c.sharedExpertFFNSize, c.denseFFNSize, 1)
        scratchBase = .allocate(capacity: scratchWidth * threads)
        scratchBase.initialize(repeating: 0, count: scratchWidth * threads)
        softmax = (0..<threads).map { _ in SoftmaxState(group: c.headCount / max(c.kvHeadCount, 1)) }
    }

    deinit { scratchBase.deallocate() }

    /// Makes the per-token slots hold `n` tokens.
    func reserve(tokens n: Int) {
        let c = configuration, h = c.hiddenSize
        residual.reserve(n * h)
        query.reserve(n * c.queryDim)
        key.reserve(n * c.kvDim)
        value.reserve(n * c.kvDim)
        attentionOutput.reserve(n * h)
        ffnOutput.reserve(n * h)
        routerLogits.reserve(n * max(c.expertCount, 1))
    }

    /// The hidden activations of a SwiGLU MLP of intermediate size `width`.
    func hidden(width: Int) -> BatchSlot {
        if let slot = hidden[width] { return slot }
        let slot = BatchSlot(width: width)
        hidden[width] = slot
        return slot
    }

    /// Per-worker scratch of the widest row.
    func scratch(_ worker: Int) -> UnsafeMutablePointer<Float> { scratchBase + worker * scratchWidth }

    func softmaxState(_ worker: Int) -> SoftmaxState { softmax[worker] }
}
