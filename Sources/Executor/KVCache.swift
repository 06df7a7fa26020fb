import Quantization

/// Keys and values of every past position, per layer, in f32 or f16.
///
/// ### Layout
/// Per layer, position-major: element `position * kvDim + kvHead * headDim + d`; values the same
/// with `valueDim`. Multi-head latent attention keeps one row of `kvDim` = latent + rotary key per
/// position in the key table and no value table (`valueDim` 0). Storage grows in chunks as positions are appended, up to `maxPositions`.
///
/// Sendable: the mutable storage lives in a lock box. A forward pass holds that lock for the
/// whole pass (its pool workers read and write the storage only inside the pass), and
/// ``count``, ``truncate(to:)`` and ``byteCount`` take it, so a cache shared by two tasks is
/// never read and written at once.
public final class KVCache: Sendable {
    public enum ElementType: String, Sendable, CaseIterable {
        case f32, f16
        var size: Int { self == .f32 ? 4 : 2 }
    }

    public let layerCount: Int
    public let kvDim: Int
    /// Floats per position of a layer's value table (`kvDim` unless latent attention keeps none).
    public let valueDim: Int
    public let maxPositions: Int
    public let elementType: ElementType
    private let storage: Locked<Storage>

    public init(layerCount: Int, kvDim: Int, valueDim: Int? = nil, maxPositions: Int, elementType: ElementType = .f16) {
        self.layerCount = layerCount
        self.kvDim = kvDim
        self.valueDim = valueDim ?? kvDim
        self.maxPositions = maxPositions
        self.elementType = elementType
        storage = Locked(Storage(layerCount: layerCount, kvDim: kvDim, valueDim: valueDim ?? kvDim, maxPositions: maxPositions, elementType: elementType))
    }

    deinit {
        storage.withLock { $0.deallocate() }
    }

    /// Positions already stored (the position of the next token).
    public var count: Int { storage.withLock { $0.count } }

    /// Forgets every position after the first `n` (e.g. to rewind a chat).
    public func truncate(to n: Int) { storage.withLock { $0.count = max(0, min(n, $0.count)) } }

    /// Bytes held by the cache.
    public var byteCount: Int { storage.withLock { layerCount * $0.capacity * (kvDim + valueDim) * elementType.size } }

    /// Runs `body` with the storage locked (one forward pass).
    func withStorage<R>(_ body: (inout Storage) throws -> R) rethrows -> R {
        try storage.withLock(body)
    }

    /// The cache's memory. Only a forward pass holding the cache's lock uses it.
    struct Storage {
        let kvDim: Int
        let valueDim: Int
        let maxPositions: Int
        let elementType: ElementType
        /// Positions stored.
        fileprivate(set) var count = 0
        fileprivate(set) var capacity = 0
        private var keys: [UnsafeMutableRawPointer?]
        private var values: [UnsafeMutableRawPointer?]

        init(layerCount: Int, kvDim: Int, valueDim: Int, maxPositions: Int, elementType: ElementType) {
            self.kvDim = kvDim
            self.valueDim = valueDim
            self.maxPositions = maxPositions
            self.elementType = elementType
            keys = Array(repeating: nil, count: layerCount)
            values = Array(repeating: nil, count: layerCount)
        }

        fileprivate func deallocate() {
            for p in keys + values { p?.deallocate() }
        }

        /// Makes room for `extra` more positions. Throws past `maxPositions`.
        mutating func reserve(_ extra: Int) throws {
            let needed = count + extra
            guard needed <= maxPositions else {
                throw ExecutorError.contextFull(needed: needed, limit: maxPositions)
            }
            guard needed > capacity else { return }
            let newCapacity = min(maxPositions, max(needed, capacity * 2, 64))
            for l in keys.indices {
                for table in valueDim > 0 ? [0, 1] : [0] {
                    let width = table == 0 ? kvDim : valueDim
                    let bytes = newCapacity * width * elementType.size
                    let fresh = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    fresh.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
                    let old = table == 0 ? keys[l] : values[l]
                    if let old {
                        fresh.copyMemory(from: old, byteCount: count * width * elementType.size)
                        old.deallocate()
                    }
                    if table == 0 { keys[l] = fresh } else { values[l] = fresh }
                }
            }
            capacity = newCapacity
        }

        mutating func advance(by n: Int) { count += n }

        /// Stores one position's keys and values (kvDim floats each) for a layer.
        func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
            let offset = position * kvDim, valueOffset = position * valueDim
            switch elementType {
            case .f32:
                (keys[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: k, count: kvDim)
                (values[layer]!.assumingMemoryBound(to: Float.self) + valueOffset).update(from: v, count: valueDim)
            case .f16:
                Kernels.toHalf(k, keys[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
                Kernels.toHalf(v, values[layer]!.assumingMemoryBound(to: UInt16.self) + valueOffset, count: valueDim)
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

        /// Stores one position's key row (kvDim floats) for a layer that keeps no values (latent attention).
        func store(layer: Int, position: Int, keys k: UnsafePointer<Float>) {
            let offset = position * kvDim
            switch elementType {
            case .f32: (keys[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: k, count: kvDim)
            case .f16: Kernels.toHalf(k, keys[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
            }
        }

        /// `out += weight * key(position)[offset ..< offset + count]` (latent attention's values are its keys' latent part).
        @inline(__always) func addKey(layer: Int, position: Int, offset: Int, weight: Float, into out: UnsafeMutablePointer<Float>, count: Int) {
            let index = position * kvDim + offset
            switch elementType {
            case .f32: Kernels.axpy(weight, keys[layer]!.assumingMemoryBound(to: Float.self) + index, out, count: count)
            case .f16: Kernels.axpy(weight, half: keys[layer]!.assumingMemoryBound(to: UInt16.self) + index, out, count: count)
            }
        }

        /// `out += weight * value(position)[offset ..< offset + count]`.
        @inline(__always) func addValue(layer: Int, position: Int, offset: Int, weight: Float, into out: UnsafeMutablePointer<Float>, count: Int) {
            let index = position * valueDim + offset
            switch elementType {
            case .f32: Kernels.axpy(weight, values[layer]!.assumingMemoryBound(to: Float.self) + index, out, count: count)
            case .f16: Kernels.axpy(weight, half: values[layer]!.assumingMemoryBound(to: UInt16.self) + index, out, count: count)
            }
        }
    }
}
