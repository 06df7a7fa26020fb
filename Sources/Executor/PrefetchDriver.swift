import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router

/// Drives prefetching during decode: when a MoE layer has routed, scores the last prediction
/// for it, asks the ``ExpertPredictor`` for the experts of the next MoE layers (computing their
/// gates on the current residual stream when the predictor looks ahead), and queues them with
/// the expert store. Holds the predictor's per-step state and its running ``PredictionStats``.
///
/// Part of a transformer's per-pass state: used only while the transformer's lock is held.
final class PrefetchDriver {
    /// A MoE layer's gate and the norm before it, for lookahead.
    struct Gate {
        let gate: Linear
        let norm: [Float]
        /// The layer's router, whose scoring (softmax, or sigmoid plus selection bias and groups) ranks the guesses.
        let router: Router
    }

    var predictor: ExpertPredictor?
    private(set) var stats = PredictionStats()
    /// `--prefetch auto`'s measurements and decision.
    private(set) var governor = PrefetchGovernor()
    /// The store's counters for the governor (nil: nothing is paged, auto stays off).
    private let ioSample: (@Sendable () -> PrefetchGovernor.IOSample)?
    private let topK: Int
    /// Predictions made for layers not yet reached in the current decode step.
    private var pending: [Int: [Int]] = [:]
    /// Experts chosen so far in the current decode step, by layer.
    private var routedThisStep: [Int: [Int]] = [:]
    private let moeLayers: [Int]
    private let gates: [Int: Gate]
    private let experts: any ExpertProvider
    private let epsilon: Float

    init(configuration: ModelConfiguration, gates: [Int: Gate], experts: any ExpertProvider,
         ioSample: (@Sendable () -> PrefetchGovernor.IOSample)? = nil) {
        moeLayers = configuration.moeLayers
        epsilon = configuration.rmsNormEpsilon
        topK = configuration.expertsPerToken
        self.gates = gates
        self.experts = experts
        self.ioSample = ioSample
    }

    func resetStats() { stats = PredictionStats() }

    /// `auto`'s state for summaries: on or off, and the two times it compares.
    var autoStatus: String? {
        guard predictor?.kind == .auto else { return nil }
        let ms = { (s: Double?) in s.map { String(format: "%.3f ms", $0 * 1e3) } ?? "unmeasured" }
        return "auto \(governor.enabled ? "on" : "off"): layer compute \(ms(governor.layerSeconds)) vs reads of its likely misses \(ms(governor.missSeconds))"
    }

    /// Scores the last prediction for layer `l` against what the router chose, then predicts the
    /// next `depth` MoE layers and asks the store to prefetch them (nearest layer first). The
    /// loads overlap this layer's expert computation.
    func predictAhead(layer l: Int, chosen: [Int], pass: ForwardPass) {
        guard let predictor, predictor.kind != .none else { return }
        if let predicted = pending.removeValue(forKey: l) {
            stats.record(layer: l, predicted: predicted, actual: chosen)
        }
        if l == moeLayers.first { routedThisStep.removeAll() }
        routedThisStep[l] = chosen
        guard let position = moeLayers.firstIndex(of: l) else { return }
        let previous = position > 0 ? routedThisStep[moeLayers[position - 1]] : nil
        let auto = predictor.kind == .auto
        var headroom = Int.max, expertBytes = 0
        if auto {
            guard let ioSample else { return }
            let sample = ioSample()
            expertBytes = sample.expertBytes
            let on = governor.observe(layer: l, previous: position > 0 ? moeLayers[position - 1] : nil, time: DispatchTime.now().uptimeNanoseconds,
                                      sample: sample)
            guard on else { return }
            headroom = max(0, governor.headroomBytes)
        }
        var keys: [ExpertKey] = []
        for target in moeLayers.dropFirst(position + 1).prefix(predictor.depth) {
            var lookahead: [Float]? = nil
            if predictor.guessing == .lookahead || predictor.guessing == .hybrid, let gate = gates[target] {
                lookahead = probabilities(gate, workspace: pass.workspace)
            }
            let ranked = predictor.ranked(target: target, currentLayer: l, current: chosen, previous: previous, lookahead: lookahead)
            var predicted = ranked.experts
            if auto {
                let scores = ranked.scores
                predicted = PrefetchGovernor.uncertain(predicted, score: { $0 < scores.count ? scores[$0] : 0 }, k: topK, width: predictor.width)
            }
            pending[target] = predicted
            keys += predicted.map { ExpertKey(layer: target, expert: $0) }
        }
        if auto {
            // Guesses already resident cost nothing; the rest may take the disk's headroom only.
            keys = PrefetchGovernor.capped(experts.notResident(keys), size: { _ in expertBytes }, budget: headroom)
        }
        experts.prefetch(keys, currentLayer: l)
    }

    /// softmax(gate · rmsnorm(x)) for the current token's residual stream (decode only), with
    /// the fast kernels whatever the run's path (a guess needs no more).
    private func probabilities(_ g: Gate, workspace ws: Workspace) -> [Float]? {
        let gate = g.gate
        let h = gate.inputs
        let normed = ws.lookaheadInput.reset(tokens: 1)
        Ops.rmsNorm(ws.residual.pointer, weight: g.norm, eps: epsilon, count: h, into: normed.row(0))
        normed.invalidate()
        if Kernels.needsQuantizedInput(gate.matrix.type, path: .fast) { normed.quantize() }
        var logits = [Float](repeating: 0, count: gate.outputs)
        do {
            try logits.withUnsafeMutableBufferPointer { out in
                try Kernels.matmul(gate.matrix, rows: 0..<gate.outputs, input: normed, output: out.baseAddress!, ldy: gate.outputs,
                                   path: .fast, scratch: ws.scratch(0))
            }
        } catch {
            return nil
        }
        return logits.withUnsafeBufferPointer { g.router.selectionProbabilities(logits: $0) }
    }
}
