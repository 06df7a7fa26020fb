import Foundation

/// Lines from standard input as raw bytes, decoded as UTF-8 with invalid bytes replaced by U+FFFD.
final class InputLines {
    private var buffer: [UInt8] = []
    private var atEnd = false

    /// The next line without its newline, or nil at end of input; `repaired` is true when bytes were replaced.
    func next() -> (text: String, repaired: Bool)? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                var line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 0x0D { line.removeLast() }
                return Self.decode(line)
            }
            if atEnd {
                guard !buffer.isEmpty else { return nil }
                defer { buffer = [] }
                return Self.decode(buffer)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(STDIN_FILENO, &chunk, chunk.count)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                atEnd = true
            } else {
                buffer.append(contentsOf: chunk[..<n])
            }
        }
    }

    /// All remaining input.
    func rest() -> (text: String, repaired: Bool) {
        var all: [UInt8] = []
        while let line = nextBytes() { all += line }
        return Self.decode(all)
    }

    private func nextBytes() -> [UInt8]? {
        if atEnd && buffer.isEmpty { return nil }
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(STDIN_FILENO, &chunk, chunk.count)
        if n <= 0 { atEnd = true; return nil }
        return Array(chunk[..<n])
    }

    static func decode(_ bytes: [UInt8]) -> (text: String, repaired: Bool) {
        let text = String(decoding: bytes, as: UTF8.self)
        return (text, Array(text.utf8) != bytes)
    }
}
