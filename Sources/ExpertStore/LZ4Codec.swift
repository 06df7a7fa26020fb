import CLZ4
import ModelFormats

/// LZ4 block compression of expert records, with an optional byte-plane "shuffle" first:
/// the bytes of `width`-byte elements are regrouped by position (all first bytes, then all
/// second bytes, …). 16-bit weights have near-random low bytes and repetitive high bytes;
/// grouped, LZ4 finds the repetition (BF16 experts shrink to 76% after the shuffle;
/// docs/store-format.md). Quantized blocks do not compress, so the writer stores them raw.
public enum LZ4Codec {
    public enum Error: Swift.Error, CustomStringConvertible {
        case corrupt(what: String)
        case tooLarge(Int)

        public var description: String {
            switch self {
            case let .corrupt(what): return "\(what): LZ4 data is corrupt"
            case let .tooLarge(n): return "\(n) bytes is too large for one LZ4 block"
            }
        }
    }

    /// Regroups bytes by position within `width`-byte elements. Trailing bytes stay in place.
    public static func shuffle(_ input: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer) {
        guard let src = input.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        // Unchecked pointer loops (both buffers hold input.count bytes): a byte-subscript loop
        // ran at ~1 GB/s and made decoding slower than reading.
        let n = input.count / width
        for b in 0..<width {
            let plane = dst + b * n
            for i in 0..<n { plane[i] = src[i * width + b] }
        }
        for i in (n * width)..<input.count { dst[i] = src[i] }
    }

    /// Inverse of ``shuffle(_:width:into:)``.
    public static func unshuffle(_ input: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer) {
        guard let src = input.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = input.count / width
        if width == 2 {
            let low = src, high = src + n
            let out = UnsafeMutableRawPointer(dst)
            for i in 0..<n { out.storeBytes(of: UInt16(low[i]) | UInt16(high[i]) << 8, toByteOffset: 2 * i, as: UInt16.self) }
        } else {
            for b in 0..<width {
                let plane = src + b * n
                for i in 0..<n { dst[i * width + b] = plane[i] }
            }
        }
        for i in (n * width)..<input.count { dst[i] = src[i] }
    }

    /// LZ4 (high-compression mode) of `input`; nil if it would not be smaller.
    public static func compress(_ input: UnsafeRawBufferPointer) throws -> [UInt8]? {
        guard input.count < Int(LZ4_MAX_INPUT_SIZE) else { throw Error.tooLarge(input.count) }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { o in
            LZ4_compress_HC(input.baseAddress?.assumingMemoryBound(to: CChar.self), o.baseAddress!.assumingMemoryBound(to: CChar.self),
                            Int32(input.count), Int32(bound), 9)
        }
        guard written > 0, Int(written) < input.count else { return nil }
        out.removeLast(bound - Int(written))
        return out
    }

    /// Decompresses exactly `output.count` bytes; throws on corrupt input (never reads or
    /// writes out of bounds: LZ4_decompress_safe checks both).
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, what: @autoclosure () -> String) throws {
        let n = LZ4_decompress_safe(input.baseAddress?.assumingMemoryBound(to: CChar.self), output.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    Int32(input.count), Int32(output.count))
        guard n == Int32(output.count) else { throw Error.corrupt(what: what()) }
    }

    /// Decodes a stored record into `output` (decoded length) using `scratch` (decoded length)
    /// for shuffled records.
    public static func decode(
        _ stored: UnsafeRawBufferPointer, compression: MoEStoreFile.Compression, into output: UnsafeMutableRawBufferPointer,
        scratch: UnsafeMutableRawBufferPointer, what: @autoclosure () -> String
    ) throws {
        switch compression {
        case .none:
            output.copyMemory(from: stored)
        case .lz4:
            try decompress(stored, into: output, what: what())
        case .lz4Shuffle2, .lz4Shuffle4:
            let planes = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<output.count])
            try decompress(stored, into: planes, what: what())
            unshuffle(UnsafeRawBufferPointer(planes), width: compression == .lz4Shuffle2 ? 2 : 4, into: output)
        }
    }
}
