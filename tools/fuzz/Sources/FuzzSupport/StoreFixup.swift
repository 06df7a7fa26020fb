import Foundation
import SwiftMoE

/// Makes a mutated `.moe` store pass its XXH64 checks, as a hostile file would: every checksum
/// the manifest names is recomputed over the bytes it covers (where those lie in the file),
/// then the manifest's and the header's. Without this, random damage never gets past the
/// checksums and the parsers behind them are never reached.
public enum StoreFixup {
    public static func fix(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        let h = MoEStoreFile.headerSize
        guard bytes.count >= h, Array(bytes[0..<8]) == MoEStoreFile.magic else { return bytes }
        let offset = Int(clamping: u64(bytes, 16)), length = Int(clamping: u64(bytes, 24))
        if offset >= h, length >= 0, offset <= bytes.count, length <= bytes.count - offset,
           let object = try? JSONSerialization.jsonObject(with: Data(bytes[offset..<(offset + length)]), options: [.fragmentsAllowed]),
           var manifest = object as? [String: Any] {
            fixChecksums(&manifest, in: bytes)
            if var json = try? JSONSerialization.data(withJSONObject: manifest, options: [.fragmentsAllowed]).map({ $0 }) {
                if json.count <= length {
                    // Same place and length: pad with spaces (JSON allows trailing whitespace).
                    json += [UInt8](repeating: 0x20, count: length - json.count)
                    bytes.replaceSubrange(offset..<(offset + length), with: json)
                } else {
                    put(UInt64(bytes.count), &bytes, 16)
                    put(UInt64(json.count), &bytes, 24)
                    bytes += json
                }
            }
        }
        let mOffset = Int(clamping: u64(bytes, 16)), mLength = Int(clamping: u64(bytes, 24))
        if mOffset >= 0, mLength >= 0, mOffset <= bytes.count, mLength <= bytes.count - mOffset {
            put(XXH64.hash(Array(bytes[mOffset..<(mOffset + mLength)])), &bytes, 32)
        }
        put(UInt64(bytes.count), &bytes, 40)
        put(XXH64.hash(Array(bytes[0..<56])), &bytes, 56)
        return bytes
    }

    static func fixChecksums(_ manifest: inout [String: Any], in bytes: [UInt8]) {
        func fixed(_ entry: [String: Any], lengthKey: String = "length") -> [String: Any] {
            var entry = entry
            if let o = entry["offset"] as? Int, let n = entry[lengthKey] as? Int, entry["checksum"] != nil,
               o >= 0, n >= 0, o <= bytes.count, n <= bytes.count - o {
                entry["checksum"] = NSNumber(value: XXH64.hash(Array(bytes[o..<(o + n)])))
            }
            return entry
        }
        if let dense = manifest["dense"] as? [[String: Any]] { manifest["dense"] = dense.map { fixed($0) } }
        if let t = manifest["tokenizer"] as? [String: Any] { manifest["tokenizer"] = fixed(t) }
        if let sections = manifest["sections"] as? [String: [String: Any]] { manifest["sections"] = sections.mapValues { fixed($0) } }
        if let experts = manifest["experts"] as? [[String: Any]] {
            manifest["experts"] = experts.map { r -> [String: Any] in
                var r = fixed(r, lengthKey: "storedLength")
                if let copy = r["missCopy"] as? [String: Any] { r["missCopy"] = fixed(copy) }
                return r
            }
        }
    }

    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) }
    }

    static func put(_ v: UInt64, _ b: inout [UInt8], _ at: Int) {
        for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
}
