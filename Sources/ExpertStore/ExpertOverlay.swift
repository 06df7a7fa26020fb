import Foundation
import ModelFormats
import Quantization

/// An expert's three tensors re-quantized into memory this object owns: what an expert would
/// look like stored at another type, without writing a store. Used to measure how much
/// quality each expert loses at each type (`moe calibrate`) and to check planned stores
/// before writing them (`moe convert --max-ppl-increase`).
public final class RequantizedExpert: @unchecked Sendable {
    public let weights: ExpertWeights
    /// The types actually used for gate, up and down (a type whose block does not divide a
    /// row falls back, see ``StoreLayout/storableType(_:rowLength:)``).
    public let types: [GGMLType]
    private let memory: UnsafeMutableRawPointer

    /// Dequantizes `source` and quantizes it to `type` (nil: an exact copy of the source bytes).
    public init(_ source: ExpertWeights, to type: GGMLType?) throws {
        let views = [source.gate, source.up, source.down]
        let targets = views.map { view in type.map { StoreLayout.storableType($0, rowLength: view.rowLength) } ?? view.type }
        var offsets: [Int] = []
        var total = 0
        for (view, target) in zip(views, targets) {
            offsets.append(total)
            let length = target == view.type ? view.data.count : (target.traits.byteCount(elements: view.elementCount) ?? 0)
            total = (total + length + 63) / 64 * 64
        }
        memory = .allocate(byteCount: max(total, 64), alignment: 64)
        var out: [TensorView] = []
        do {
            for (i, (view, target)) in zip(views, targets).enumerated() {
                let destination = memory + offsets[i]
                let length: Int
                if target == view.type {
                    length = view.data.count
                    if let base = view.data.baseAddress { destination.copyMemory(from: base, byteCount: length) }
                } else {
                    let floats = try view.toFloats()
                    length = target.traits.byteCount(elements: floats.count) ?? 0
                    try floats.withUnsafeBufferPointer { buffer in
                        guard let base = buffer.baseAddress else { return }
                        try target.quantize(base, into: destination, count: floats.count)
                    }
                }
                out.append(TensorView(name: view.name, type: target, shape: view.shape,
                                      data: UnsafeRawBufferPointer(start: destination, count: length), owner: nil))
            }
        } catch {
            memory.deallocate()
            throw error
        }
        weights = ExpertWeights(gate: out[0], up: out[1], down: out[2])
        types = targets
    }

    deinit { memory.deallocate() }
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
