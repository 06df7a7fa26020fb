import Foundation
import ModelFormats
import Quantization

/// An expert's three tensors re-quantized into memory this object owns: exactly what its
/// `.moe` record holds at that type. `moe convert` writes these bytes; `moe calibrate` and
/// `moe convert --max-ppl-increase` run them in memory to measure the quality they lose.
public final class RequantizedExpert: @unchecked Sendable {
    /// Gate, up and down at the types actually used (a type whose block does not divide a
    /// row falls back, see ``StoreLayout/storableType(_:rowLength:)``).
    public let weights: ExpertWeights

    /// The bytes behind the views; each view keeps it alive (its `owner`), like a mapping.
    final class Memory {
        let base: UnsafeMutableRawPointer
        init(_ count: Int) { base = .allocate(byteCount: count, alignment: 64) }
        deinit { base.deallocate() }
    }

    /// Dequantizes `source` and quantizes it to `type` (nil: an exact copy of the source bytes),
    /// with the types and lengths a `.moe` record would have (``StoreLayout/tensors(of:at:)``).
    public init(_ source: ExpertWeights, to type: GGMLType?) throws {
        let views = [source.gate, source.up, source.down]
        let layout = StoreLayout.tensors(of: views.map { ($0.type, $0.shape) }, at: type)
        // A kept tensor is its source bytes exactly; a converted one its type's length.
        let lengths = zip(views, layout).map { view, t in t.type == view.type ? view.data.count : t.length }
        var offsets: [Int] = []
        var total = 0
        for length in lengths {
            offsets.append(total)
            total = (total + length + 63) / 64 * 64
        }
        let memory = Memory(max(total, 64))
        var out: [TensorView] = []
        for (i, (view, t)) in zip(views, layout).enumerated() {
            let destination = memory.base + offsets[i]
            if t.type == view.type {
                if let base = view.data.baseAddress { destination.copyMemory(from: base, byteCount: lengths[i]) }
            } else {
                let floats = try view.toFloats()
                try floats.withUnsafeBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return }
                    try t.type.quantize(base, into: destination, count: floats.count)
                }
            }
            out.append(TensorView(name: view.name, type: t.type, shape: view.shape,
                                  data: UnsafeRawBufferPointer(start: destination, count: lengths[i]), owner: memory))
        }
        weights = ExpertWeights(gate: out[0], up: out[1], down: out[2])
    }
}

/// Serves some experts from replacements held in memory and every other one from a base
/// provider. The replacements can change between forward passes (not during one).
public final class ExpertOverlay: ExpertProvider, @unchecked Sendable {
    public let base: ExpertProvider
    private let lock = NSLock()
    private var replacements: [ExpertKey: RequantizedExpert] = [:]

    public init(base: ExpertProvider) {
        self.base = base
    }

    /// Replaces every current replacement with `experts`.
    public func set(_ experts: [ExpertKey: RequantizedExpert]) {
        lock.lock()
        replacements = experts
        lock.unlock()
    }

    public func withExpert<R>(layer: Int, expert: Int, _ body: (ExpertWeights) throws -> R) throws -> R {
        lock.lock()
        let replacement = replacements[ExpertKey(layer: layer, expert: expert)]
        lock.unlock()
        if let replacement { return try body(replacement.weights) }
        return try base.withExpert(layer: layer, expert: expert, body)
    }
}
