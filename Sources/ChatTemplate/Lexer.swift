/// Splits template source into text and tags, applying Jinja's whitespace control with the
/// settings transformers uses (`trim_blocks=True`, `lstrip_blocks=True`):
/// `{%-`/`-%}` (and `{{-`, `-}}`, `{#-`, `-#}`) strip all whitespace on that side; a block
/// or comment tag drops the first newline after it; spaces and tabs between the start of a
/// line and a block or comment tag are removed (`{%+` keeps them).
struct Lexer {
    enum TokenKind: Equatable {
        case name(String)
        case string(String)
        case int(Int)
        case double(Double)
        case op(String)
    }

    struct Token {
        let kind: TokenKind
        let location: SourceLocation
    }

    enum Segment {
        case text(String)
        case output([Token], SourceLocation)
        case statement([Token], SourceLocation)
    }

    private enum TagKind { case output, statement, comment }

    private struct RawTag {
        var kind: TagKind
        var tokens: [Token]
        var location: SourceLocation
        var stripBefore: Bool
        var keepIndent: Bool
        var stripAfter: Bool
    }

    private enum RawSegment {
        case text(start: Int, end: Int)
        case tag(RawTag)
    }

    let s: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]

    init(_ source: String) {
        // Jinja normalizes newlines to "\n" before lexing.
        let normalized = source.replacingOccurrences(of: "\r\n", with: "\n")
        s = Array(normalized.unicodeScalars)
        for (i, c) in s.enumerated() where c == "\n" { lineStarts.append(i + 1) }
    }

    func location(_ index: Int) -> SourceLocation {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return SourceLocation(line: lo + 1, column: index - lineStarts[lo] + 1)
    }

    func segments() throws -> [Segment] {
        var raw: [RawSegment] = []
        var i = 0, textStart = 0
        let n = s.count
        while i < n {
            guard s[i] == "{", i + 1 < n, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" else { i += 1; continue }
            raw.append(.text(start: textStart, end: i))
            let open = i
            let kind: TagKind = s[i + 1] == "{" ? .output : s[i + 1] == "%" ? .statement : .comment
            var j = i + 2
            var tag = RawTag(kind: kind, tokens: [], location: location(open), stripBefore: false, keepIndent: false, stripAfter: false)
            if j < n, s[j] == "-" { tag.stripBefore = true; j += 1 } else if j < n, s[j] == "+" { tag.keepIndent = true; j += 1 }
            if kind == .comment {
                var k = j
                while k + 1 < n, !(s[k] == "#" && s[k + 1] == "}") { k += 1 }
                guard k + 1 < n else { throw TemplateError.syntax("comment `{#` is never closed", location(open)) }
                tag.stripAfter = k > j && s[k - 1] == "-"
                i = k + 2
            } else {
                i = try tokenize(from: j, kind: kind, into: &tag)
            }
            raw.append(.tag(tag))
            textStart = i
            // {% raw %} ... {% endraw %}: keep the inside as text.
            if kind == .statement, tag.tokens.count == 1, tag.tokens[0].kind == .name("raw") {
                guard let (endOpen, endClose, endTag) = findEndRaw(from: i) else {
                    throw TemplateError.syntax("`{% raw %}` is never closed", tag.location)
                }
                raw.append(.text(start: i, end: endOpen))
                raw.append(.tag(endTag))
                i = endClose
                textStart = i
            }
        }
        raw.append(.text(start: textStart, end: n))

        var result: [Segment] = []
        for (k, seg) in raw.enumerated() {
            switch seg {
            case let .tag(tag):
                switch tag.kind {
                case .output: result.append(.output(tag.tokens, tag.location))
                case .statement: result.append(.statement(tag.tokens, tag.location))
                case .comment: break
                }
            case let .text(start, end):
                var a = start, b = end
                if k > 0, case let .tag(prev) = raw[k - 1] {
                    if prev.stripAfter {
                        while a < b, isSpace(s[a]) { a += 1 }
                    } else if prev.kind != .output, a < b, s[a] == "\n" {
                        a += 1  // trim_blocks
                    }
                }
                if k + 1 < raw.count, case let .tag(next) = raw[k + 1] {
                    if next.stripBefore {
                        while b > a, isSpace(s[b - 1]) { b -= 1 }
                    } else if next.kind != .output, !next.keepIndent {
                        // lstrip_blocks: only spaces/tabs between the line start and the tag.
                        var c = b
                        while c > a, s[c - 1] == " " || s[c - 1] == "\t" { c -= 1 }
                        let atLineStart = c > a ? s[c - 1] == "\n" : (a == 0 || s[a - 1] == "\n")
                        if atLineStart { b = c }
                    }
                }
                if a < b {
                    var text = ""
                    text.unicodeScalars.append(contentsOf: s[a..<b])
                    result.append(.text(text))
                }
            }
        }
        return result
    }

    private func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    private func findEndRaw(from start: Int) -> (Int, Int, RawTag)? {
        var i = start
        while i + 1 < s.count {
            if s[i] == "{", s[i + 1] == "%" {
                var tag = RawTag(kind: .statement, tokens: [], location: location(i), stripBefore: false, keepIndent: false, stripAfter: false)
                var j = i + 2
                if j < s.count, s[j] == "-" { tag.stripBefore = true; j += 1 }
                if let end = try? tokenize(from: j, kind: .statement, into: &tag), tag.tokens.count == 1, tag.tokens[0].kind == .name("endraw") {
                    return (i, end, tag)
                }
            }
            i += 1
        }
        return nil
    }

    private static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                    "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="]

    /// Tokenizes the inside of `{{ }}` or `{% %}` starting at `start`; returns the index after the closing delimiter.
    private func tokenize(from start: Int, kind: TagKind, into tag: inout RawTag) throws -> Int {
        let close: (Unicode.Scalar, Unicode.Scalar) = kind == .output ? ("}", "}") : ("%", "}")
        var i = start
        var depth = 0
        let n = s.count
        while true {
            while i < n, isSpace(s[i]) { i += 1 }
            guard i < n else {
                throw TemplateError.syntax(kind == .output ? "`{{` is never closed" : "`{%` is never closed", tag.location)
            }
            let c = s[i]
            let loc = location(i)
            if depth == 0 {
                if c == close.0, i + 1 < n, s[i + 1] == close.1 { return i + 2 }
                if c == "-", i + 2 < n, s[i + 1] == close.0, s[i + 2] == close.1 { tag.stripAfter = true; return i + 3 }
            }
            if c == "_" || c.properties.isAlphabetic {
                var j = i
                while j < n, s[j] == "_" || s[j].properties.isAlphabetic || ("0"..."9").contains(s[j]) { j += 1 }
                tag.tokens.append(Token(kind: .name(string(i, j)), location: loc))
                i = j
            } else if ("0"..."9").contains(c) {
                var j = i
                while j < n, ("0"..."9").contains(s[j]) || s[j] == "_" { j += 1 }
                if j + 1 < n, s[j] == ".", ("0"..."9").contains(s[j + 1]) {
                    j += 1
                    while j < n, ("0"..."9").contains(s[j]) { j += 1 }
                    if j < n, s[j] == "e" || s[j] == "E" {
                        var k = j + 1
                        if k < n, s[k] == "+" || s[k] == "-" { k += 1 }
                        if k < n, ("0"..."9").contains(s[k]) {
                            j = k
                            while j < n, ("0"..."9").contains(s[j]) { j += 1 }
                        }
                    }
                    tag.tokens.append(Token(kind: .double(Double(string(i, j))!), location: loc))
                } else {
                    guard let v = Int(string(i, j).replacingOccurrences(of: "_", with: "")) else {
                        throw TemplateError.syntax("integer literal out of range", loc)
                    }
                    tag.tokens.append(Token(kind: .int(v), location: loc))
                }
                i = j
            } else if c == "'" || c == "\"" {
                var j = i + 1
                var value = String.UnicodeScalarView()
                while true {
                    guard j < n else { throw TemplateError.syntax("string literal is never closed", loc) }
                    let d = s[j]
                    if d == c { j += 1; break }
                    if d == "\\", j + 1 < n {
                        let e = s[j + 1]
                        j += 2
                        switch e {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        case "r": value.append("\r")
                        case "0": value.append("\0")
                        case "\\", "'", "\"": value.append(e)
                        case "\n": break
                        case "x", "u", "U":
                            let width = e == "x" ? 2 : e == "u" ? 4 : 8
                            guard j + width <= n, let v = UInt32(string(j, j + width), radix: 16), let u = Unicode.Scalar(v) else {
                                throw TemplateError.syntax("bad \\\(e) escape in string literal", location(j - 2))
                            }
                            value.append(u)
                            j += width
                        default: value.append("\\"); value.append(e)
                        }
                        continue
                    }
                    value.append(d)
                    j += 1
                }
                tag.tokens.append(Token(kind: .string(String(value)), location: loc))
                i = j
            } else {
                guard let op = Self.operators.first(where: { matches($0, at: i) }) else {
                    throw TemplateError.syntax("unexpected character \"\(c)\"", loc)
                }
                if op == "(" || op == "[" || op == "{" { depth += 1 }
                if op == ")" || op == "]" || op == "}" { depth = max(0, depth - 1) }
                tag.tokens.append(Token(kind: .op(op), location: loc))
                i += op.unicodeScalars.count
            }
        }
    }

    private func matches(_ op: String, at i: Int) -> Bool {
        var k = i
        for u in op.unicodeScalars {
            guard k < s.count, s[k] == u else { return false }
            k += 1
        }
        return true
    }

    private func string(_ a: Int, _ b: Int) -> String {
        var out = ""
        out.unicodeScalars.append(contentsOf: s[a..<b])
        return out
    }
}
