import Foundation
import ModelFormats
import Quantization
import Synchronization

/// An expert's three tensors re-quantized into memory this object owns: exactly what its
/// `.moe` record holds at that type, laid out as the record is (``layout``, zeros between the
/// tensors). `moe convert` writes these bytes; `moe calibrate` and
/// `moe convert --max-ppl-increase` run them in memory to measure the quality they lose.
public final class RequantizedExpert: Sendable {
    /// Gate, up and down at the types actually used (a type whose block does not divide a
    /// row falls back, see ``StoreLayout/storableType(_:rowLength:)``).
    public let weights: ExpertWeights
    /// Where the tensors lie: the record layout of ``StoreLayout/record(of:at:expert:)``.
    public let layout: ExpertRecordLayout

    /// The bytes behind the views; each view keeps it alive (its `owner`), like a mapping.
    /// `@unchecked Sendable`: written only by ``RequantizedExpert/init(_:to:)`` before any view
    /// of it exists, read-only afterwards.
    final class Memory: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        init(_ count: Int) {
            base = .allocate(byteCount: count, alignment: ExpertRecordLayout.tensorAlignment)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        }
        deinit { base.deallocate() }
    }

    /// Dequantizes `source` and quantizes it to `type` (nil: an exact copy of the source bytes),
    /// with the types and lengths a `.moe` record would have (``StoreLayout/record(of:at:expert:)``).
    /// With `importance`, types that have an importance-weighted quantizer use it (activation-aware
    /// quantization, as `llama-quantize --imatrix`).
    public init(_ source: ExpertWeights, to type: GGMLType?, importance: ExpertImportance? = nil) throws {
        let views = [source.gate, source.up, source.down]
        let layout = try StoreLayout.record(of: views.map { ($0.type, $0.shape) }, at: type, expert: source.gate.name)
        let memory = Memory(max(layout.decodedLength, ExpertRecordLayout.tensorAlignment))
        var out: [TensorView] = []
        let columnWeights = [importance?.input, importance?.input, importance?.hidden]
        for (i, (view, t)) in zip(views, layout.tensors).enumerated() {
            let destination = memory.base + t.offset
            if t.type == view.type {
                // A kept tensor is its source bytes exactly.
                guard view.data.count == t.length else {
                    throw ModelFormatError.invalidTensor(path: "", tensor: view.name, reason: "\(view.data.count) bytes for a \(t.type) tensor of shape \(t.shape)")
                }
                if let base = view.data.baseAddress { destination.copyMemory(from: base, byteCount: t.length) }
            } else {
                let floats = try view.toFloats()
                try floats.withUnsafeBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return }
                    let w = columnWeights[i].flatMap { $0.count == view.rowLength ? $0 : nil }
                    try t.type.quantize(base, into: destination, count: floats.count, rowLength: view.rowLength, importance: w)
                }
            }
            out.append(TensorView(name: view.name, type: t.type, shape: view.shape,
                                  data: UnsafeRawBufferPointer(start: destination, count: t.length), owner: memory))
        }
        weights = ExpertWeights(gate: out[0], up: out[1], down: out[2])
        self.layout = layout
    }
}

/// Per-column importance of one expert's matrices (activation-aware quantization): `input` for
/// the gate and up projections (one weight per model dimension), `hidden` for the down
/// projection (one per expert FFN dimension). llama.cpp's imatrix entries for the expert: the
/// mean square of each input over the calibration tokens routed to it.
public struct ExpertImportance: Sendable, Equatable {
    public var input: [Float]
    public var hidden: [Float]

    public init(input: [Float], hidden: [Float]) {
        self.input = input
        self.hidden = hidden
    }
}

/// Serves some experts from replacements held in memory and every other one from a base
/// provider. The replacements can change between forward passes (not during one).
public final class ExpertOverlay: ExpertProvider {
    public let base: ExpertProvider
    private let replacements = Mutex<[ExpertKey: RequantizedExpert]>([:])

    public init(base: ExpertProvider) {
        self.base = base
    }

    /// Replaces every current replacement with `experts`.
    public func set(_ experts: [ExpertKey: RequantizedExpert]) {
        replacements.withLock { $0 = experts }
    }

    public func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R {
        let replacement = replacements.withLock { $0[ExpertKey(layer: layer, expert: expert)] }
        if let replacement { return try body(replacement.weights) }
        return try base.withExpert(layer: layer, expert: expert, body)
    }
}
