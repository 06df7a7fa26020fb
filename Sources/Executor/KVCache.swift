import Quantization

/// Keys and values of every past position, per layer, in f32 or f16.
///
/// ### Layout
/// Per layer, slot-major: element `slot * kvDim + kvHead * headDim + d`; values the same with
/// `valueDim`. Multi-head latent attention keeps one row of `kvDim` = latent + rotary key per
/// position in the key table and no value table (`valueDim` 0). A full-attention
/// layer's slot is the position; its storage grows in chunks as positions are appended, up to
/// `maxPositions`. A sliding-window layer (`windows[l]` = w) is a ring: slot = position mod
/// its capacity, which is `w - 1` (the older keys the next token still sees) plus the tokens of
/// the pass being appended, so a pass of n tokens holds `w + n - 1` positions and decode holds
/// w. Older positions are overwritten, so such a cache cannot rewind past them: ``truncate(to:)``
/// then empties it.
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
    /// Width of a value row; 0 when the layer keeps no values (latent attention).
    public let valueDim: Int
    public let maxPositions: Int
    public let elementType: ElementType
    private let storage: Locked<Storage>

    /// - Parameter windows: per layer, the sliding window whose keys alone are kept (nil: all).
    /// - Parameter valueDim: width of a value row (nil: `kvDim`; 0: no value table).
    public init(layerCount: Int, kvDim: Int, valueDim: Int? = nil, maxPositions: Int, elementType: ElementType = .f16,
                windows: [Int?]? = nil) {
        self.layerCount = layerCount
        self.kvDim = kvDim
        self.valueDim = valueDim ?? kvDim
        self.maxPositions = maxPositions
        self.elementType = elementType
        storage = Locked(Storage(layerCount: layerCount, kvDim: kvDim, valueDim: valueDim ?? kvDim, maxPositions: maxPositions, elementType: elementType,
                                 windows: windows ?? Array(repeating: nil, count: layerCount)))
    }

    /// Bytes a cache of `maxPositions` holds at most when passes append up to `chunk` tokens:
    /// full layers hold every position, sliding layers `window + chunk - 1` (what `--memory` plans).
    public static func plannedBytes(kvDim: Int, valueDim: Int? = nil, elementSize: Int, maxPositions: Int, chunk: Int, windows: [Int?]) -> Int {
        windows.reduce(0) { sum, window in
            sum + (kvDim + (valueDim ?? kvDim)) * elementSize * (window.map { min(maxPositions, $0 + max(chunk, 1) - 1) } ?? maxPositions)
        }
    }

    deinit {
        storage.withLock { $0.deallocate() }
    }

    /// Positions already stored (the position of the next token).
    public var count: Int { storage.withLock { $0.count } }

    /// Forgets every position after the first `n` (e.g. to rewind a chat). A sliding-window
    /// layer that no longer holds the window before `n` makes the cache empty instead: read
    /// ``count`` afterwards for the positions kept.
    public func truncate(to n: Int) { storage.withLock { $0.truncate(to: n) } }

    /// Bytes held by the cache.
    public var byteCount: Int { storage.withLock { $0.capacities.reduce(0, +) * (kvDim + valueDim) * elementType.size } }

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
        /// Slots allocated per layer.
        fileprivate(set) var capacities: [Int]
        /// Per layer, the sliding window whose positions alone are kept (nil: every position).
        let windows: [Int?]
        private var keys: [UnsafeMutableRawPointer?]
        private var values: [UnsafeMutableRawPointer?]

        init(layerCount: Int, kvDim: Int, valueDim: Int, maxPositions: Int, elementType: ElementType, windows: [Int?]) {
            self.kvDim = kvDim
            self.valueDim = valueDim
            self.maxPositions = maxPositions
            self.elementType = elementType
            self.windows = windows.count == layerCount ? windows : Array(repeating: nil, count: layerCount)
            capacities = Array(repeating: 0, count: layerCount)
            keys = Array(repeating: nil, count: layerCount)
            values = Array(repeating: nil, count: layerCount)
        }

        fileprivate func deallocate() {
            for p in keys + values { p?.deallocate() }
        }

        fileprivate mutating func truncate(to n: Int) {
            let target = max(0, min(n, count))
            for (l, window) in windows.enumerated() {
                // Positions still held: the last `capacity` before `count`.
                if let window, max(0, target - (window - 1)) < count - capacities[l], target > 0 {
                    count = 0
                    return
                }
            }
            count = target
        }

        /// Makes room for `extra` more positions. Throws past `maxPositions`.
        mutating func reserve(_ extra: Int) throws {
            let needed = count + extra
            guard needed <= maxPositions else {
                throw ExecutorError.contextFull(needed: needed, limit: maxPositions)
            }
            for l in keys.indices {
                let old = capacities[l]
                let wanted: Int
                if let window = windows[l] {
                    wanted = min(maxPositions, window - 1 + extra)
                    guard wanted != old else { continue }
                } else {
                    guard needed > old else { continue }
                    wanted = min(maxPositions, max(needed, old * 2, 64))
                }
                // Positions to carry over: all of them, or the ring's last window - 1.
                let kept = windows[l].map { max(0, count - ($0 - 1)) } ?? 0
                for table in valueDim > 0 ? [0, 1] : [0] {
                    let row = (table == 0 ? kvDim : valueDim) * elementType.size
                    let bytes = wanted * row
                    let fresh = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
                    fresh.initializeMemory(as: UInt8.self, repeating: 0, count: max(bytes, 1))
                    if let source = table == 0 ? keys[l] : values[l] {
                        for p in kept..<count {
                            (fresh + slot(p, capacity: wanted, ring: windows[l] != nil) * row)
                                .copyMemory(from: source + slot(p, capacity: old, ring: windows[l] != nil) * row, byteCount: row)
                        }
                        source.deallocate()
                    }
                    if table == 0 { keys[l] = fresh } else { values[l] = fresh }
                }
                capacities[l] = wanted
            }
        }

        @inline(__always) private func slot(_ position: Int, capacity: Int, ring: Bool) -> Int {
            ring ? position % capacity : position
        }

        /// Where `position` lives in layer `layer`'s tables.
        @inline(__always) func slot(layer: Int, position: Int) -> Int {
            windows[layer] == nil ? position : position % capacities[layer]
        }

        mutating func advance(by n: Int) { count += n }

        /// Stores one position's keys and values (kvDim floats each) for a layer.
        func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
            let s = slot(layer: layer, position: position)
            let offset = s * kvDim, valueOffset = s * valueDim
            switch elementType {
            case .f32:
                (keys[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: k, count: kvDim)
                (values[layer]!.assumingMemoryBound(to: Float.self) + valueOffset).update(from: v, count: valueDim)
            case .f16:
                Kernels.toHalf(k, keys[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
                Kernels.toHalf(v, values[layer]!.assumingMemoryBound(to: UInt16.self) + valueOffset, count: valueDim)
            }
        }

        /// Stores one position's key row (kvDim floats) for a layer that keeps no values (latent attention).
        func store(layer: Int, position: Int, keys k: UnsafePointer<Float>) {
            let offset = slot(layer: layer, position: position) * kvDim
            switch elementType {
            case .f32: (keys[layer]!.assumingMemoryBound(to: Float.self) + offset).update(from: k, count: kvDim)
            case .f16: Kernels.toHalf(k, keys[layer]!.assumingMemoryBound(to: UInt16.self) + offset, count: kvDim)
            }
        }

        /// `out += weight * key(position)[offset ..< offset + count]` (latent attention's values are its keys' latent part).
        @inline(__always) func addKey(layer: Int, position: Int, offset: Int, weight: Float, into out: UnsafeMutablePointer<Float>, count: Int) {
            let index = slot(layer: layer, position: position) * kvDim + offset
            switch elementType {
            case .f32: Kernels.axpy(weight, keys[layer]!.assumingMemoryBound(to: Float.self) + index, out, count: count)
            case .f16: Kernels.axpy(weight, half: keys[layer]!.assumingMemoryBound(to: UInt16.self) + index, out, count: count)
            }
        }

        /// Dot product of `q` with the key of `position` at element `offset` (a head), `count` wide.
        @inline(__always) func keyDot(layer: Int, position: Int, offset: Int, _ q: UnsafePointer<Float>, count: Int) -> Float {
            let index = slot(layer: layer, position: position) * kvDim + offset
            switch elementType {
            case .f32: return Kernels.dot(keys[layer]!.assumingMemoryBound(to: Float.self) + index, q, count: count)
            case .f16: return Kernels.dot(half: keys[layer]!.assumingMemoryBound(to: UInt16.self) + index, q, count: count)
            }
        }

        /// `out += weight * value(position)[offset ..< offset + count]`.
        @inline(__always) func addValue(layer: Int, position: Int, offset: Int, weight: Float, into out: UnsafeMutablePointer<Float>, count: Int) {
            let index = slot(layer: layer, position: position) * valueDim + offset
            switch elementType {
            case .f32: Kernels.axpy(weight, values[layer]!.assumingMemoryBound(to: Float.self) + index, out, count: count)
            case .f16: Kernels.axpy(weight, half: values[layer]!.assumingMemoryBound(to: UInt16.self) + index, out, count: count)
            }
        }
    }
}
