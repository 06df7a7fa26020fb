import Quantization

/// Keys and values of every past position, per layer, in f32 or f16.
///
/// ### Layout
/// Per layer, position-major: element `position * kvDim + kvHead * headDim + d`.
/// Storage grows in chunks as positions are appended, up to `maxPositions`.
public final class KVCache {
    public enum ElementType: String, Sendable, CaseIterable {
        case f32, f16
        var size: Int { self == .f32 ? 4 : 2 }
    }

    public let layerCount: Int
    public let kvDim: Int
    public let maxPositions: Int
    public let elementType: ElementType
    /// Positions already stored (the position of the next token).
    public private(set) var count: Int = 0
    private var keys: [UnsafeMutableRawPointer?]
    private var values: [UnsafeMutableRawPointer?]
    private(set) var capacity: Int = 0

    public init(layerCount: Int, kvDim: Int, maxPositions: Int, elementType: ElementType = .f16) {
        self.layerCount = layerCount
        self.kvDim = kvDim
        self.maxPositions = maxPositions
        self.elementType = elementType
        keys = Array(repeating: nil, count: layerCount)
        values = Array(repeating: nil, count: layerCount)
    }

    deinit {
        for p in keys + values { p?.deallocate() }
    }

    /// Makes room for `extra` more positions. Throws past `maxPositions`.
    func reserve(_ extra: Int) throws {
        let needed = count + extra
        guard needed <= maxPositions else {
            throw ExecutorError.contextFull(needed: needed, limit: maxPositions)
        }
        guard needed > capacity else { return }
        let newCapacity = min(maxPositions, max(needed, capacity * 2, 64))
        let bytes = newCapacity * kvDim * elementType.size
        for l in 0..<layerCount {
            for table in [0, 1] {
                let fresh = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                fresh.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
                let old = table == 0 ? keys[l] : values[l]
                if let old {
                    fresh.copyMemory(from: old, byteCount: count * kvDim * elementType.size)
                    old.deallocate()
                }
                if table == 0 { keys[l] = fresh } else { values[l] = fresh }
            }
        }
        capacity = newCapacity
    }

    func advance(by n: Int) { count += n }

    /// Forgets every position after the first `n` (e.g. to rewind a chat).
    public func truncate(to n: Int) { count = max(0, min(n, count)) }

    /// Bytes held by the cache.
    public var byteCount: Int { 2 * layerCount * capacity * kvDim * elementType.size }

    /// Stores one position's keys and values (kvDim floats each) for a layer.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        let offset = position * kvDim
        switch elementType {
        case .f32:
            (keys[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: k, count: kvDim)
            (values[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: v, count: kvDim)
        case .f16:
            Kernels.toHalf(k, keys[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
            Kernels.toHalf(v, values[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
        }
    }

    /// Dot product of `q` with the key of `position` at element `offset` (a head), `count` wide.
    @inline(__always) func keyDot(layer: Int, position: Int, offset: Int, _ q: UnsafePointer<Float>, count: Int) -> Float {
        let index = position * kvDim + offset
        switch elementType {
        case .f32: return Kernels.dot(keys[layer]!.assumingMemoryBound(to: Float.self) + index, q, count: count)
        case .f16: return Kernels.dot(half: keys[layer]!.assumingMemoryBound(to: UInt16.self) + index, q, count: count)
        }
    }

    /// `out += weight * value(position)[offset ..< offset + count]`.
    @inline(__always) func addValue(layer: Int, position: Int, offset: Int, weight: Float, into out: UnsafeMutablePointer<Float>, count: Int) {
        let index = position * kvDim + offset
        switch elementType {
        case .f32: Kernels.axpy(weight, values[layer]!.assumingMemoryBound(to: Float.self) + index, out, count: count)
        case .f16: Kernels.axpy(weight, half: values[layer]!.assumingMemoryBound(to: UInt16.self) + index, out, count: count)
        }
    }
}
