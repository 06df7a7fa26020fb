/// Keys and values of every past position, per layer, in f32.
///
/// ### Layout
/// Per layer, position-major: `keys[layer][position * kvDim + kvHead * headDim + d]`.
/// Storage grows in chunks as positions are appended, up to `maxPositions`.
public final class KVCache {
    public let layerCount: Int
    public let kvDim: Int
    public let maxPositions: Int
    /// Positions already stored (the position of the next token).
    public private(set) var count: Int = 0
    var keys: [[Float]]
    var values: [[Float]]
    private var capacity: Int = 0

    public init(layerCount: Int, kvDim: Int, maxPositions: Int) {
        self.layerCount = layerCount
        self.kvDim = kvDim
        self.maxPositions = maxPositions
        keys = Array(repeating: [], count: layerCount)
        values = Array(repeating: [], count: layerCount)
    }

    /// Makes room for `extra` more positions. Throws past `maxPositions`.
    func reserve(_ extra: Int) throws {
        let needed = count + extra
        guard needed <= maxPositions else {
            throw ExecutorError.contextFull(needed: needed, limit: maxPositions)
        }
        guard needed > capacity else { return }
        let newCapacity = min(maxPositions, max(needed, capacity * 2, 64))
        for l in 0..<layerCount {
            keys[l].append(contentsOf: repeatElement(0, count: (newCapacity - capacity) * kvDim))
            values[l].append(contentsOf: repeatElement(0, count: (newCapacity - capacity) * kvDim))
        }
        capacity = newCapacity
    }

    func advance(by n: Int) { count += n }

    /// Forgets every position after the first `n` (e.g. to rewind a chat).
    public func truncate(to n: Int) { count = max(0, min(n, count)) }

    /// Bytes held by the cache.
    public var byteCount: Int { 2 * layerCount * capacity * kvDim * MemoryLayout<Float>.size }
}
