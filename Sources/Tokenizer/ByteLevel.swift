/// GPT-2's reversible byte ↔ character map (`bytes_to_unicode` in openai/gpt-2, HF `ByteLevel`).
///
/// Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, 0x7F–0xA0,
/// 0xAD) are shifted to U+0100… in byte order, so a space becomes `Ġ` (U+0120) and a newline `Ċ`.
/// Byte-level BPE vocabularies are written in these characters.
enum ByteLevel {
    /// `scalar[b]` is the character that stands for byte `b`.
    static let scalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next) ?? " "  // next < 0x200: always a valid scalar
                next += 1
            }
        }
        return table
    }()

    /// The inverse map: character → byte, for the 256 characters above.
    static let byte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in scalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The UTF-8 bytes of the character standing for each byte (1 or 2 bytes).
    static let utf8: [[UInt8]] = scalar.map { Array(String(Character($0)).utf8) }

    /// Byte-level text → the bytes it stands for; `nil` if a character is not in the map
    /// (added tokens such as `<｜User｜>` are stored as plain text).
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars {
            guard let b = byte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// Raw bytes → byte-level text bytes (UTF-8).
    static func encode<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: utf8[Int(b)]) }
        return out
    }
}
