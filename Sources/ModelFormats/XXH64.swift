/// XXH64 (xxHash, 64-bit), the checksum of `.moe` store records: fast enough to verify every
/// expert as it is paged in (several GB/s), and a published algorithm with test vectors.
public enum XXH64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return hash(UnsafeRawBufferPointer(start: nil, count: 0), seed: seed, empty: true) }
        var i = 0
        var h: UInt64
        if count >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            while i + 32 <= count {
                v1 = round(v1, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                v2 = round(v2, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                v3 = round(v3, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                v4 = round(v4, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            h = converge(v1, v2, v3, v4)
        } else {
            h = seed &+ p5
        }
        return finish(h &+ UInt64(count), base + i, count - i)
    }

    @inline(__always) static func converge(_ v1: UInt64, _ v2: UInt64, _ v3: UInt64, _ v4: UInt64) -> UInt64 {
        var h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
        h = merge(h, v1)
        h = merge(h, v2)
        h = merge(h, v3)
        return merge(h, v4)
    }

    /// The last steps: the remaining `count` (< 32) bytes at `base`, then the avalanche.
    static func finish(_ start: UInt64, _ base: UnsafeRawPointer, _ count: Int) -> UInt64 {
        var h = start, i = 0
        while i + 8 <= count {
            h ^= round(0, UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            h = rotl(h, 27) &* p1 &+ p4
            i += 8
        }
        if i + 4 <= count {
            h ^= UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* p1
            h = rotl(h, 23) &* p2 &+ p3
            i += 4
        }
        while i < count {
            h ^= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) &* p5
            h = rotl(h, 11) &* p1
            i += 1
        }
        return avalanche(h)
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64, empty: Bool) -> UInt64 {
        avalanche(seed &+ p5)
    }

    @inline(__always) static func avalanche(_ value: UInt64) -> UInt64 {
        var h = value
        h ^= h >> 33
        h = h &* p2
        h ^= h >> 29
        h = h &* p3
        h ^= h >> 32
        return h
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    /// The same hash over bytes given in pieces (``update(_:)``): equal to ``hash(_:seed:)`` of
    /// their concatenation, without holding it.
    public struct Hasher: Sendable {
        private var v1: UInt64, v2: UInt64, v3: UInt64, v4: UInt64
        private let seed: UInt64
        private var pending = [UInt8](repeating: 0, count: 32)
        private var pendingCount = 0
        private var total = 0

        public init(seed: UInt64 = 0) {
            self.seed = seed
            (v1, v2, v3, v4) = (seed &+ p1 &+ p2, seed &+ p2, seed, seed &- p1)
        }

        private mutating func stripe(_ p: UnsafeRawPointer) {
            v1 = round(v1, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
            v2 = round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            v3 = round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
            v4 = round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            total += bytes.count
            var i = 0
            if pendingCount > 0 {
                let take = min(32 - pendingCount, bytes.count)
                pending.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: pendingCount).copyMemory(from: base, byteCount: take) }
                pendingCount += take
                i = take
                guard pendingCount == 32 else { return }
                pending.withUnsafeBytes { stripe($0.baseAddress!) }
                pendingCount = 0
            }
            while i + 32 <= bytes.count {
                stripe(base + i)
                i += 32
            }
            let rest = bytes.count - i
            if rest > 0 { pending.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: base + i, byteCount: rest) } }
            pendingCount = rest
        }

        public func finalize() -> UInt64 {
            let h = total >= 32 ? converge(v1, v2, v3, v4) : seed &+ p5
            return pending.withUnsafeBytes { finish(h &+ UInt64(total), $0.baseAddress!, pendingCount) }
        }
    }
}
