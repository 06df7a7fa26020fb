import Foundation

/// A pull parser over a JSON file, read from disk in pieces: the caller asks for the value it
/// expects next (an object's members, an array's elements, an integer, a string) and builds its
/// own typed result as it goes, so reading a large file costs its result plus one buffer —
/// not the whole file, and not an object graph of it (`JSONDecoder` and `JSONSerialization`
/// take several times a file's size; on a calibration file of integer tables, about 14×).
///
/// Strict JSON (RFC 8259) except that duplicate object keys are passed on as they come. Errors
/// name the byte offset and what was expected there. Untrusted input: nesting deeper than
/// ``maxDepth`` and strings longer than the caller's limit are errors, never a crash.
public final class JSONPullReader {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        /// Byte offset in the file where the problem was found.
        public var offset: Int
        public var reason: String
        /// Where in the document: keys and indices from the top, e.g. `activations.uses[3]`
        /// (empty at the top level).
        public var path = ""
        public var description: String { (path.isEmpty ? "" : "at \(path), ") + "byte \(offset): \(reason)" }
    }

    private enum Step {
        case key(String), index(Int)
    }

    /// The keys and indices of the values being read, outermost first.
    private var steps: [Step] = []

    /// ``Failure/path`` of the value being read now.
    public var path: String {
        var out = ""
        for step in steps {
            switch step {
            case let .key(k): out += (out.isEmpty ? "" : ".") + ModelFormatError.shown(k)
            case let .index(i): out += "[\(i)]"
            }
        }
        return out
    }

    /// Nesting beyond this many arrays and objects is refused.
    public static let maxDepth = 128

    private let handle: FileHandle?
    private var buffer: [UInt8]
    private var index = 0
    private var filled = 0
    /// File offset of buffer[0].
    private var base = 0
    private var exhausted = false
    private let chunk: Int
    private var depth = 0

    /// Reads `path`; `chunk` bytes are read at a time (small values test the refills).
    public init(path: String, chunk: Int = 1 << 20) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw Failure(offset: 0, reason: "cannot open the file")
        }
        self.handle = handle
        self.chunk = max(chunk, 1)
        buffer = []
    }

    /// Reads `bytes` (for tests and for values already in memory).
    public init(bytes: [UInt8], chunk: Int = 1 << 20) {
        handle = nil
        self.chunk = max(chunk, 1)
        buffer = []
        pending = bytes[...]
    }

    private var pending: ArraySlice<UInt8> = []

    deinit { try? handle?.close() }

    /// Byte offset of the next unread byte.
    public var offset: Int { base + index }

    public func fail(_ reason: String) -> Failure { Failure(offset: offset, reason: reason, path: path) }

    /// A failure at `offset` with the current path.
    private func failure(_ offset: Int, _ reason: String) -> Failure { Failure(offset: offset, reason: reason, path: path) }

    // MARK: bytes

    /// Refills the buffer; false at the end of the input.
    private func refill() throws -> Bool {
        if exhausted { return false }
        base += index
        var next: [UInt8]
        if let handle {
            let data: Data?
            do { data = try handle.read(upToCount: chunk) } catch { throw failure(base, "read failed: \(error.localizedDescription)") }
            next = data.map { [UInt8]($0) } ?? []
        } else {
            let take = pending.prefix(chunk)
            next = Array(take)
            pending = pending.dropFirst(take.count)
        }
        if next.isEmpty {
            exhausted = true
            buffer = []
            index = 0
            filled = 0
            return false
        }
        buffer = next
        index = 0
        filled = buffer.count
        return true
    }

    /// The next byte without consuming it; nil at the end.
    private func peekByte() throws -> UInt8? {
        if index == filled, !(try refill()) { return nil }
        return buffer[index]
    }

    private func nextByte() throws -> UInt8? {
        guard let b = try peekByte() else { return nil }
        index += 1
        return b
    }

    private func skipWhitespace() throws {
        while let b = try peekByte(), b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
    }

    /// The next significant byte (after whitespace), not consumed.
    public func peek() throws -> UInt8? {
        try skipWhitespace()
        return try peekByte()
    }

    private func expect(_ byte: UInt8, _ what: String) throws {
        try skipWhitespace()
        guard let b = try nextByte() else { throw fail("the file ends where \(what) was expected") }
        guard b == byte else { throw failure(offset - 1, "\(what) expected, found \(Self.describe(b))") }
    }

    static func describe(_ b: UInt8) -> String {
        (0x21...0x7E).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : String(format: "byte 0x%02x", b)
    }

    private func enter() throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth) levels") }
    }

    // MARK: structure

    /// Reads an object; `member` is called with each key and must read that key's value.
    public func object(_ member: (String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"), "an object")
        try enter()
        defer { depth -= 1 }
        if try peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            guard try peek() == UInt8(ascii: "\"") else { throw fail("an object key (a string) expected") }
            let key = try string(limit: 4096)
            try expect(UInt8(ascii: ":"), "':' after an object key")
            steps.append(.key(key))
            try member(key)
            steps.removeLast()
            try skipWhitespace()
            guard let b = try nextByte() else { throw fail("the file ends inside an object") }
            if b == UInt8(ascii: "}") { return }
            guard b == UInt8(ascii: ",") else { throw failure(offset - 1, "',' or '}' expected in an object, found \(Self.describe(b))") }
        }
    }

    /// Reads an array; `element` is called with each index and must read that element.
    public func array(_ element: (Int) throws -> Void) throws {
        try expect(UInt8(ascii: "["), "an array")
        try enter()
        defer { depth -= 1 }
        if try peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        var i = 0
        while true {
            steps.append(.index(i))
            try element(i)
            steps.removeLast()
            i += 1
            try skipWhitespace()
            guard let b = try nextByte() else { throw fail("the file ends inside an array") }
            if b == UInt8(ascii: "]") { return }
            guard b == UInt8(ascii: ",") else { throw failure(offset - 1, "',' or ']' expected in an array, found \(Self.describe(b))") }
        }
    }

    /// True (and consumed) when the next value is `null`.
    public func null() throws -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        try literal("null")
        return true
    }

    private func literal(_ word: String) throws {
        for expected in word.utf8 {
            guard let b = try nextByte() else { throw fail("the file ends inside '\(word)'") }
            guard b == expected else { throw failure(offset - 1, "'\(word)' expected, found \(Self.describe(b))") }
        }
    }

    public func bool() throws -> Bool {
        switch try peek() {
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        default: throw fail("true or false expected")
        }
    }

    // MARK: numbers

    /// The characters of the next number token, checked against JSON's grammar.
    private func numberText() throws -> String {
        try skipWhitespace()
        let start = offset
        var text: [UInt8] = []
        while let b = try peekByte(), (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".")
            || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
            guard text.count < 64 else { throw failure(start, "a number longer than 64 characters") }
            text.append(b)
            index += 1
        }
        guard !text.isEmpty else {
            if let b = try peekByte() { throw fail("a number expected, found \(Self.describe(b))") }
            throw fail("the file ends where a number was expected")
        }
        guard Self.isJSONNumber(text) else { throw failure(start, "'\(String(decoding: text, as: UTF8.self))' is not a JSON number") }
        return String(decoding: text, as: UTF8.self)
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    static func isJSONNumber(_ t: [UInt8]) -> Bool {
        var i = 0
        func digits() -> Int {
            let s = i
            while i < t.count, t[i] >= 0x30, t[i] <= 0x39 { i += 1 }
            return i - s
        }
        if i < t.count, t[i] == UInt8(ascii: "-") { i += 1 }
        guard i < t.count else { return false }
        if t[i] == 0x30 { i += 1 } else if digits() == 0 { return false }
        if i < t.count, t[i] == UInt8(ascii: ".") {
            i += 1
            if digits() == 0 { return false }
        }
        if i < t.count, t[i] == UInt8(ascii: "e") || t[i] == UInt8(ascii: "E") {
            i += 1
            if i < t.count, t[i] == UInt8(ascii: "+") || t[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { return false }
        }
        return i == t.count
    }

    /// An integer (no fraction or exponent) that fits in Int.
    public func int() throws -> Int {
        try skipWhitespace()
        let start = offset
        var negative = false
        if try peekByte() == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value = 0
        var count = 0
        var leadingZero = false
        while let b = try peekByte(), b >= 0x30, b <= 0x39 {
            if count == 1, leadingZero { throw failure(start, "a number with a leading zero") }
            if count == 0, b == 0x30 { leadingZero = true }
            let digit = Int(b - 0x30)
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = negative ? m.subtractingReportingOverflow(digit) : m.addingReportingOverflow(digit)
            guard !o1, !o2 else { throw failure(start, "an integer out of range") }
            value = a
            count += 1
            index += 1
        }
        guard count > 0 else {
            if let b = try peekByte() { throw fail("an integer expected, found \(Self.describe(b))") }
            throw fail("the file ends where an integer was expected")
        }
        if let b = try peekByte(), b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
            throw failure(start, "an integer expected, found a number with a fraction or exponent")
        }
        return value
    }

    public func double() throws -> Double {
        let start = offset
        let text = try numberText()
        guard let v = Double(text), v.isFinite else { throw failure(start, "\(text) is not a number in range") }
        return v
    }

    /// A number as Float, rounded once from its decimal text (as `JSONDecoder` does).
    public func float() throws -> Float {
        let start = offset
        let text = try numberText()
        guard let v = Float(text), v.isFinite else { throw failure(start, "\(text) is not a number in range") }
        return v
    }

    // MARK: strings

    /// A string of at most `limit` UTF-8 bytes (decoded), escapes resolved.
    public func string(limit: Int) throws -> String {
        try expect(UInt8(ascii: "\""), "a string")
        let start = offset - 1
        var out: [UInt8] = []
        func add(_ scalar: Unicode.Scalar) throws {
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
            guard out.count <= limit else { throw failure(start, "a string longer than \(limit) bytes") }
        }
        while true {
            guard let b = try nextByte() else { throw failure(start, "the file ends inside a string") }
            switch b {
            case UInt8(ascii: "\""):
                guard let s = String(validating: out, as: UTF8.self) else { throw failure(start, "a string that is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                guard let e = try nextByte() else { throw failure(start, "the file ends inside a string") }
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    let escape = offset - 2  // the backslash: where an unpaired surrogate is reported
                    var code = try hex4(start)
                    if (0xD800..<0xDC00).contains(code) {
                        // A high surrogate must be followed by \u and a low one.
                        guard try nextByte() == UInt8(ascii: "\\"), try nextByte() == UInt8(ascii: "u") else {
                            throw failure(escape, "an unpaired surrogate in a string")
                        }
                        let low = try hex4(start)
                        guard (0xDC00..<0xE000).contains(low) else { throw failure(escape, "an unpaired surrogate in a string") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw failure(escape, "an unpaired surrogate in a string")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw failure(escape, "an invalid \\u escape") }
                    try add(scalar)
                default: throw failure(offset - 1, "an invalid escape \\\(Self.describe(e))")
                }
            default:
                guard b >= 0x20 else { throw failure(offset - 1, "a control character (\(Self.describe(b))) inside a string") }
                out.append(b)
            }
            guard out.count <= limit else { throw failure(start, "a string longer than \(limit) bytes") }
        }
    }

    private func hex4(_ start: Int) throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let h = try nextByte() else { throw failure(start, "the file ends inside a string") }
            let d: UInt32
            switch h {
            case 0x30...0x39: d = UInt32(h - 0x30)
            case 0x41...0x46: d = UInt32(h - 0x41 + 10)
            case 0x61...0x66: d = UInt32(h - 0x61 + 10)
            default: throw failure(offset - 1, "a \\u escape with \(Self.describe(h))")
            }
            v = v << 4 | d
        }
        return v
    }

    // MARK: whole values

    /// Reads and discards the next value, whatever it is (checked as JSON all the same).
    public func skip() throws {
        switch try peek() {
        case UInt8(ascii: "{")?: try object { _ in try skip() }
        case UInt8(ascii: "[")?: try array { _ in try skip() }
        case UInt8(ascii: "\"")?: _ = try string(limit: Int.max)
        case UInt8(ascii: "t")?, UInt8(ascii: "f")?: _ = try bool()
        case UInt8(ascii: "n")?: try literal("null")
        case nil: throw fail("the file ends where a value was expected")
        default: _ = try numberText()
        }
    }

    /// The next value's bytes as in the file (at most `limit`), e.g. for `JSONDecoder` on a
    /// small member, which checks their grammar.
    public func raw(limit: Int) throws -> Data {
        var out = Data()
        let start = offset
        func keep(_ b: UInt8) throws {
            out.append(b)
            guard out.count <= limit else { throw failure(start, "a value longer than \(limit) bytes") }
        }
        try skipWhitespace()
        guard let first = try peekByte() else { throw fail("the file ends where a value was expected") }
        switch first {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            // Brackets matched with a stack (strings copied with their escapes); the grammar
            // between them is for the caller's decoder to check.
            var stack: [UInt8] = []
            while let b = try nextByte() {
                try keep(b)
                switch b {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    stack.append(b)
                    guard depth + stack.count <= Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth) levels") }
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    guard let open = stack.popLast(), (open == UInt8(ascii: "{")) == (b == UInt8(ascii: "}")) else {
                        throw failure(offset - 1, "a \(Self.describe(b)) that closes nothing open")
                    }
                    if stack.isEmpty { return out }
                case UInt8(ascii: "\""):
                    while true {
                        guard let c = try nextByte() else { throw failure(start, "the file ends inside a string") }
                        try keep(c)
                        if c == UInt8(ascii: "\"") { break }
                        if c == UInt8(ascii: "\\") {
                            guard let e = try nextByte() else { throw failure(start, "the file ends inside a string") }
                            try keep(e)
                        }
                    }
                default: break
                }
            }
            throw failure(start, "the file ends inside a value that starts here")
        case UInt8(ascii: "\""):
            return try JSONEncoder().encode(try string(limit: limit))
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            return Data((try bool() ? "true" : "false").utf8)
        case UInt8(ascii: "n"):
            try literal("null")
            return Data("null".utf8)
        default:
            return Data(try numberText().utf8)
        }
    }

    // MARK: typed helpers

    /// `[Int]`.
    public func ints() throws -> [Int] {
        var row: [Int] = []
        try array { _ in row.append(try int()) }
        return row
    }

    /// `[[Int]]`.
    public func intRows() throws -> [[Int]] {
        var rows: [[Int]] = []
        try array { _ in rows.append(try ints()) }
        return rows
    }

    /// `[Float]`.
    public func floats() throws -> [Float] {
        var row: [Float] = []
        try array { _ in row.append(try float()) }
        return row
    }

    /// `[String]`, each at most `limit` bytes.
    public func strings(limit: Int) throws -> [String] {
        var out: [String] = []
        try array { _ in out.append(try string(limit: limit)) }
        return out
    }

    /// Nothing but whitespace may follow the top-level value.
    public func end() throws {
        try skipWhitespace()
        if let b = try peekByte() { throw fail("\(Self.describe(b)) after the end of the top-level value") }
    }
}
