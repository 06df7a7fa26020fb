import Quantization

/// What the blocks of one forward pass share: the thread pool, the kernel path, the
/// workspace, the tokens' positions, the caller's routing observer and the prefetch driver.
/// Built by ``Transformer`` while it holds its lock, and valid only inside that pass.
struct ForwardPass {
    let pool: ThreadPool
    let kernels: KernelPath
    let workspace: Workspace
    /// Tokens in the pass and the position of the first.
    let tokens: Int
    let start: Int
    let observer: RoutingObserver?
    let prefetch: PrefetchDriver
    /// ``ExecutorOptions/expertActivations``.
    var expertActivations: ExpertActivationObserver? = nil
    /// Missing experts a prefill wave reads ahead (``ExecutorOptions/readAhead``).
    var readAhead = ExecutorOptions.defaultReadAhead

    /// Runs several linear layers over the same input in one parallel region, split by rows:
    /// `outputs[i][t * rows_i + r] = layers[i].W[r] · input[t]` (+ bias).
    func project(_ linears: [Linear], input: ActivationBatch, tokens: Range<Int>? = nil, outputs: [UnsafeMutablePointer<Float>]) throws {
        if linears.contains(where: { Kernels.needsQuantizedInput($0.matrix.type, path: kernels) }) { input.quantize(on: pool) }
        let offsets = linears.reduce(into: [0]) { $0.append($0.last! + $1.outputs) }
        let path = kernels
        let ws = workspace
        try parallel(offsets.last!, grain: 16) { range, worker in
            for (i, linear) in linears.enumerated() {
                let lo = max(range.lowerBound, offsets[i]) - offsets[i], hi = min(range.upperBound, offsets[i + 1]) - offsets[i]
                guard lo < hi else { continue }
                try Kernels.matmul(linear.matrix, rows: lo..<hi, input: input, tokens: tokens, output: outputs[i], ldy: linear.outputs,
                                   path: path, scratch: ws.scratch(worker))
                if let bias = linear.bias {
                    let count = tokens?.count ?? input.tokens
                    for t in 0..<count {
                        let row = outputs[i] + t * linear.outputs
                        for r in lo..<hi { row[r] += bias[r] }
                    }
                }
            }
        }
    }

    /// `pool.parallelFor` for throwing bodies: the first error is rethrown after the region.
    func parallel(_ count: Int, grain: Int, _ body: (Range<Int>, Int) throws -> Void) throws {
        let failure = FirstError()
        pool.parallelFor(count, grain: grain) { range, worker in
            do { try body(range, worker) } catch { failure.record(error) }
        }
        if let error = failure.error { throw error }
    }
}

extension ActivationBatch {
    /// ``quantize()`` with the tokens split across the pool (a prefill batch; one token runs
    /// on the calling thread). The result is the same bytes whatever the split.
    func quantize(on pool: ThreadPool) {
        guard !isQuantized, isQuantizable else { return }
        pool.parallelFor(tokens) { range, _ in self.quantize(tokens: range) }
        markQuantized()
    }
}
