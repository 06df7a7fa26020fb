#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ModelFormats

/// A fixed byte arena for resident experts: reserved once, never grown, carved into
/// variable-size blocks (experts may have different bit-widths) with a first-fit free list
/// that coalesces neighbours on release.
///
/// Not thread-safe, and so not `Sendable`: ``PagedExpertStore`` owns its pool and uses it
/// only under its lock.
///
/// ### Layout
///
///     base ─┬─ block (expert A) ─┬─ free ─┬─ block (expert B) ─┬─ free ──…─┐ base + capacity
///
/// Blocks start at multiples of ``alignment`` (4096, so direct I/O can read straight into
/// them) and their sizes are rounded up to it.
public final class ExpertPool {
    public static let alignment = 4096
    public let capacity: Int
    /// The arena's memory; the store writes experts here (internal: no raw pointer leaves the module).
    let base: UnsafeMutableRawPointer
    /// Free ranges, sorted by offset, never adjacent (always coalesced).
    private(set) var free: [(offset: Int, length: Int)]
    public private(set) var usedBytes = 0
    public private(set) var peakUsedBytes = 0

    /// Reserves `capacity` bytes (rounded down to the alignment). The memory is mapped
    /// anonymous and counts toward RSS only as experts are written into it.
    public init(capacity: Int) throws {
        let rounded = capacity / ExpertPool.alignment * ExpertPool.alignment
        guard rounded > 0 else { throw ExpertStoreError.poolTooSmall(needed: ExpertPool.alignment, capacity: capacity) }
        guard let p = mmap(nil, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw ExpertStoreError.cannotReserve(bytes: rounded)
        }
        self.capacity = rounded
        base = p
        free = [(0, rounded)]
    }

    deinit { munmap(base, capacity) }

    /// The bytes a block of `size` takes: at least one alignment unit, rounded up to it. Sizes
    /// are record and tensor lengths the readers bounded by their files' sizes (a record's at
    /// 64 GiB), so rounding cannot overflow; if it did, the size would saturate at `Int.max`,
    /// which no pool holds.
    public static func rounded(_ size: Int) -> Int { alignUp(max(size, 1), to: alignment) ?? Int.max }

    /// The offset of a new block of `size` bytes, or nil if no free range is large enough.
    public func allocate(_ size: Int) -> Int? {
        let length = ExpertPool.rounded(size)
        guard let i = free.firstIndex(where: { $0.length >= length }) else { return nil }
        let offset = free[i].offset
        if free[i].length == length {
            free.remove(at: i)
        } else {
            free[i] = (offset + length, free[i].length - length)
        }
        usedBytes += length
        peakUsedBytes = max(peakUsedBytes, usedBytes)
        return offset
    }

    /// Returns a block; neighbouring free ranges merge.
    public func release(offset: Int, size: Int) {
        let length = ExpertPool.rounded(size)
        usedBytes -= length
        var i = free.firstIndex { $0.offset > offset } ?? free.count
        free.insert((offset, length), at: i)
        if i + 1 < free.count, free[i].offset + free[i].length == free[i + 1].offset {
            free[i].length += free[i + 1].length
            free.remove(at: i + 1)
        }
        if i > 0, free[i - 1].offset + free[i - 1].length == free[i].offset {
            free[i - 1].length += free[i].length
            free.remove(at: i)
            i -= 1
        }
    }

    /// The largest block that could be allocated now.
    public var largestFreeBlock: Int { free.map(\.length).max() ?? 0 }

    /// Invariants: free ranges sorted, disjoint, not adjacent, inside the arena, and
    /// free + used == capacity. For tests.
    public func checkInvariants() -> Bool {
        var end = 0
        var total = 0
        for (i, r) in free.enumerated() {
            if r.length <= 0 || r.offset < end || (i > 0 && r.offset == end) { return false }
            end = r.offset + r.length
            total += r.length
        }
        return end <= capacity && total + usedBytes == capacity
    }
}
