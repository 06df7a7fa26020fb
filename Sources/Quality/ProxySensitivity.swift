import ExpertStore
import Foundation
import ModelFormats
import Quantization
import Router
import Runtime
import Synchronization

/// Sensitivities without rerunning the model: for every expert and candidate type, the
/// squared error its quantization adds to the expert's output over the calibration text,
/// predicted from ``ActivationStatistics``.
///
/// With W the source matrix and ΔW = quantize(W) − W (quantized as `moe convert` will,
/// activation-aware), X_c = Σ_tokens x_c², H_j = Σ h_j² (h = silu(g)·u, the down projection's
/// input), A_j = Σ silu(g_j)², B_j = Σ (silu′(g_j)·u_j)², n the expert's uses and ‖D_j‖² the
/// squared norm of the down projection's column j, the expected Σ_tokens ‖Δy‖² is about
///
///     E_down = Σ_j H_j Σ_r ΔD_rj²
///     E_up   = Σ_j ‖D_j‖² (A_j / n) Σ_c X_c ΔU_jc²
///     E_gate = Σ_j ‖D_j‖² (B_j / n) Σ_c X_c ΔG_jc²
///
/// (errors of different columns and tokens taken as uncorrelated; the gate and up errors
/// pass through the SwiGLU's linearization and the down projection). The sum, scaled by the
/// mean squared router weight (Σ w² / n) and divided by the text's tokens, is the expert's
/// loss at that type: proportional to its use, so the planner's frequency weighting needs no
/// windows. Cost: one quantization of every expert at every type; no forward pass.
public enum ProxySensitivity {
    /// The proxy loss of one expert (source floats and statistics) at each of `types`.
    public static func losses(gate: [Float], up: [Float], down: [Float], hiddenSize h: Int, ffnSize f: Int,
                              statistics s: ActivationStatistics, layer: Int, expert: Int,
                              types: [GGMLType?], source: ExpertWeights) throws -> [Double] {
        guard let slot = s.slot(layer: layer, expert: expert) else { return types.map { _ in 0 } }
        let i = slot / s.expertCount, e = slot % s.expertCount
        let n = s.uses[i][e]
        guard n > 0 else { return types.map { _ in 0 } }
        let x = Array(s.inputSquares[(slot * h)..<((slot + 1) * h)])
        let hs = Array(s.hiddenSquares[(slot * f)..<((slot + 1) * f)])
        let a = s.upGain[(slot * f)..<((slot + 1) * f)].map { Double($0) / Double(n) }
        let b = s.gateGain[(slot * f)..<((slot + 1) * f)].map { Double($0) / Double(n) }
        // ‖D_j‖²: down is `h` rows of `f` (row r, column j at r·f + j).
        var columnNorm = [Double](repeating: 0, count: f)
        for r in 0..<h {
            for j in 0..<f { columnNorm[j] += Double(down[r * f + j]) * Double(down[r * f + j]) }
        }
        let importance = s.importance(layer: layer, expert: expert)
        let routerScale = Double(s.routerWeightSquares[i][e]) / Double(n)
        let context = Context(gate: gate, up: up, down: down, h: h, f: f, x: x, hs: hs, a: a, b: b, columnNorm: columnNorm,
                              scale: routerScale / Double(max(s.settings.totalTokens, 1)))
        // One type per worker: the quantizations are independent, and each result lands in its own slot.
        let out = Mutex([Double](repeating: 0, count: types.count))
        let failure = Mutex<Error?>(nil)
        DispatchQueue.concurrentPerform(iterations: types.count) { k in
            do {
                let q = try RequantizedExpert(source, to: types[k], importance: importance)
                let loss = try context.loss(q.weights)
                out.withLock { $0[k] = loss }
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return out.withLock { $0 }
    }

    /// One expert's source weights and statistics, ready to score quantized copies.
    struct Context: Sendable {
        let gate: [Float], up: [Float], down: [Float]
        let h: Int, f: Int
        let x: [Float], hs: [Float], a: [Double], b: [Double], columnNorm: [Double]
        let scale: Double

        func loss(_ q: ExpertWeights) throws -> Double {
            let g2 = try q.gate.toFloats(), u2 = try q.up.toFloats(), d2 = try q.down.toFloats()
            var eGate = 0.0, eUp = 0.0, eDown = 0.0
            for j in 0..<f {
                var rowGate = 0.0, rowUp = 0.0
                for c in 0..<h {
                    let dg = Double(g2[j * h + c] - gate[j * h + c]), du = Double(u2[j * h + c] - up[j * h + c])
                    rowGate += Double(x[c]) * dg * dg
                    rowUp += Double(x[c]) * du * du
                }
                eGate += columnNorm[j] * b[j] * rowGate
                eUp += columnNorm[j] * a[j] * rowUp
            }
            for r in 0..<h {
                for j in 0..<f {
                    let dd = Double(d2[r * f + j] - down[r * f + j])
                    eDown += Double(hs[j]) * dd * dd
                }
            }
            return (eGate + eUp + eDown) * scale
        }
    }
}

extension Model {
    /// Proxy sensitivities (``ProxySensitivity``) of every MoE expert at every type of
    /// `settings.types`, as a sensitivity table with method "proxy" (`activations` = uses,
    /// `scoredTokens` = the text's tokens). Experts are read one at a time from the model's
    /// store and quantized on `threads` threads. Resumable like ``measureSensitivity``.
    public func proxySensitivity(
        statistics: ActivationStatistics, settings: SensitivityTable.Settings, resume: SensitivityTable? = nil, saveInterval: Double = 10,
        save: @escaping (SensitivityTable) throws -> Void, progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityTable {
        let types = try SensitivityRecorder.candidateTypes(settings)
        let c = configuration
        let keys = try moeExpertKeys()
        var table = SensitivityTable(settings: settings, baseNLL: 0, scoredTokens: statistics.settings.totalTokens,
                                     sourceTypes: try sourceLayout(keys[0]).map(\.type.description))
        table.method = "proxy"
        table.activations = statistics.uses
        var recorder = try SensitivityRecorder(table: table, resume: resume, total: keys.count * types.count, saveInterval: saveInterval,
                                               save: save, progress: progress)
        for key in keys {
            let missing = zip(settings.types, types).filter { recorder.resumed(key, $0.0) == nil }
            var computed: [String: Double] = [:]
            if !missing.isEmpty {
                // Copy the expert out of the store (its floats and a private copy of its bytes), then quantize without the lock.
                let (source, floats) = try withExpertWeights(key) { w in
                    (try RequantizedExpert(w, to: nil), try [w.gate, w.up, w.down].map { try $0.toFloats() })
                }
                let losses = try ProxySensitivity.losses(gate: floats[0], up: floats[1], down: floats[2], hiddenSize: c.hiddenSize,
                                                         ffnSize: c.expertFFNSize, statistics: statistics, layer: key.layer, expert: key.expert,
                                                         types: missing.map(\.1), source: source.weights)
                computed = Dictionary(uniqueKeysWithValues: zip(missing.map(\.0), losses))
            }
            for name in settings.types {
                if let loss = computed[name] {
                    recorder.record(SensitivityTable.Measurement(layer: key.layer, expert: key.expert, type: name, kld: loss, deltaNLL: 0))
                } else if let m = recorder.resumed(key, name) {
                    recorder.record(m, resumed: true)
                }
            }
            try recorder.saveIfDue()
        }
        return try recorder.finish()
    }
}
