import Foundation
import ModelFormats
import XCTest

/// ``JSONPullReader`` against Foundation's JSON parser (`JSONDecoder`, `JSONSerialization`): the
/// same values from the same documents, whatever the size of the pieces the file is read in,
/// and a clear error (with the byte offset) wherever Foundation refuses a document.
final class JSONPullReaderTests: XCTestCase {
    indirect enum Value: Equatable, Decodable {
        case null, bool(Bool), number(Double), string(String), array([Value]), object([String: Value])

        /// Foundation's reading of the same text (`JSONDecoder`, which does not turn numbers into booleans).
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null }
            else if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let d = try? c.decode(Double.self) { self = .number(d) }
            else if let s = try? c.decode(String.self) { self = .string(s) }
            else if let a = try? c.decode([Value].self) { self = .array(a) }
            else { self = .object(try c.decode([String: Value].self)) }
        }
    }

    /// Any value, read generically (numbers as Double).
    static func read(_ r: JSONPullReader) throws -> Value {
        switch try r.peek() {
        case UInt8(ascii: "{"):
            var members: [String: Value] = [:]
            try r.object { key in members[key] = try read(r) }
            return .object(members)
        case UInt8(ascii: "["):
            var elements: [Value] = []
            try r.array { _ in elements.append(try read(r)) }
            return .array(elements)
        case UInt8(ascii: "\""): return .string(try r.string(limit: 1 << 20))
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool(try r.bool())
        case UInt8(ascii: "n"):
            _ = try r.null()
            return .null
        default: return .number(try r.double())
        }
    }

    static func parse(_ text: String, chunk: Int) throws -> Value {
        let r = JSONPullReader(bytes: Array(text.utf8), chunk: chunk)
        let v = try read(r)
        try r.end()
        return v
    }

    /// Random documents: nesting, escapes, unicode, numbers of every form JSON allows.
    func testSameValuesAsJSONSerializationInAnyChunkSize() throws {
        var state: UInt64 = 20261201
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        func string() -> String {
            let pieces = ["a", "Z", "0", " ", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\b", "\\f", "\\r", "\\u00e9", "é", "日本", "\\ud83d\\ude00", "😀", "\\u0000", "~"]
            return "\"" + (0..<next(6)).map { _ in pieces[next(pieces.count)] }.joined() + "\""
        }
        func number() -> String {
            let forms = ["0", "-0", "7", "-12", "123456789012", "3.25", "-0.5", "1e3", "2E-2", "6.02e+23", "-1.5e-7", "9007199254740993"]
            return forms[next(forms.count)]
        }
        func value(_ depth: Int) -> String {
            let ws = ["", " ", "\n", "\t", " \r\n "][next(5)]
            switch depth > 4 ? next(5) : next(7) {
            case 0: return ws + "null"
            case 1: return ["true", "false"][next(2)] + ws
            case 2: return number()
            case 3, 4: return string()
            case 5: return "[" + ws + (0..<next(5)).map { _ in value(depth + 1) }.joined(separator: "," + ws) + "]"
            default:
                var keys = Set<String>()
                var members: [String] = []
                for _ in 0..<next(5) {
                    let k = string()
                    if keys.insert(k).inserted { members.append(k + ws + ":" + value(depth + 1)) }
                }
                return "{" + members.joined(separator: ",") + ws + "}"
            }
        }
        for i in 0..<300 {
            let text = i == 0 ? "{}" : (next(2) == 0 ? "[" + value(0) + "]" : value(0))
            let expected = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
            for chunk in [1, 2, 3, 7, 64, 1 << 20] {
                XCTAssertEqual(try Self.parse(text, chunk: chunk), expected, "document \(i) in pieces of \(chunk): \(text)")
            }
        }
    }

    func testWhatJSONRefusesIsAnErrorWithItsOffset() {
        // Trailing commas: Foundation's parser takes them; RFC 8259 and this reader do not.
        for (text, offset) in [("[1,]", 3), ("{\"a\":1,}", 7)] {
            XCTAssertThrowsError(try Self.parse(text, chunk: 1)) { XCTAssertEqual(($0 as? JSONPullReader.Failure)?.offset, offset, text) }
        }
        let bad: [(String, Int)] = [
            ("", 0), ("[1 2]", 3), ("{\"a\" 1}", 5), ("{1:2}", 1), ("[01]", 1), ("[1.]", 1),
            ("[.5]", 1), ("[1e]", 1), ("[-]", 1), ("[+1]", 1), ("\"a", 0), ("\"\\x\"", 2), ("\"\\u12G4\"", 5), ("\"\\ud800\"", 1),
            ("\"\\udc00\"", 1), ("\"a\u{1}b\"", 2), ("[tru]", 4), ("[nul]", 4), ("[1]x", 3), ("{\"a\":1", 6), ("[[[", 3), ("]", 0),
            ("[\"\\u00", 1), ("[1}", 2),
        ]
        for (text, offset) in bad {
            XCTAssertThrowsError(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]), "Foundation accepts \(text)")
            for chunk in [1, 5, 1 << 20] {
                XCTAssertThrowsError(try Self.parse(text, chunk: chunk), "accepted: \(text)") { error in
                    guard let f = error as? JSONPullReader.Failure else { return XCTFail("\(text): \(error)") }
                    XCTAssertEqual(f.offset, offset, "\(text): \(f)")
                }
            }
        }
    }

    func testTypedReadsRefuseTheWrongKindOfValue() throws {
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("1.5".utf8)).int())
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("1e2".utf8)).int())
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("99999999999999999999".utf8)).int())
        XCTAssertEqual(try JSONPullReader(bytes: Array("-9223372036854775808".utf8)).int(), Int.min)
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("\"1\"".utf8)).int())
        // Numbers beyond the type's range are errors, not infinities.
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("1e400".utf8)).double())
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("-1e39".utf8)).float())
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("[1]".utf8)).string(limit: 10))
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("\"abcdef\"".utf8)).string(limit: 5))
        XCTAssertEqual(try JSONPullReader(bytes: Array("\"abcde\"".utf8)).string(limit: 5), "abcde")
        XCTAssertEqual(try JSONPullReader(bytes: Array(" [[1, -2], [], [30]] ".utf8), chunk: 2).intRows(), [[1, -2], [], [30]])
        // Float from the decimal text once, as JSONDecoder gives it.
        for text in ["0.1", "3.4028235e38", "1e-45", "16777217"] {
            let viaDecoder = try JSONDecoder().decode([Float].self, from: Data("[\(text)]".utf8))
            XCTAssertEqual(try JSONPullReader(bytes: Array("[\(text)]".utf8)).floats(), viaDecoder, text)
        }
    }

    func testRawValueAndSkipAndDepthLimit() throws {
        let r = JSONPullReader(bytes: Array(#"{"skip": [1, {"x": "]}"}], "keep": {"a": [1, "\"}"]}, "n": 3}"#.utf8), chunk: 4)
        var kept = Data()
        var n = 0
        try r.object { key in
            switch key {
            case "keep": kept = try r.raw(limit: 100)
            case "n": n = try r.int()
            default: try r.skip()
            }
        }
        try r.end()
        XCTAssertEqual(String(decoding: kept, as: UTF8.self), #"{"a": [1, "\"}"]}"#)
        XCTAssertEqual(n, 3)
        XCTAssertThrowsError(try JSONPullReader(bytes: Array(#"{"a": [1, 2, 3]}"#.utf8)).raw(limit: 8))
        // Skipping checks the grammar all the same.
        XCTAssertThrowsError(try JSONPullReader(bytes: Array("[1,,2]".utf8)).skip())
        // Nesting: refused past the limit, by skip, raw and the typed reads alike.
        let deep = String(repeating: "[", count: JSONPullReader.maxDepth + 1) + String(repeating: "]", count: JSONPullReader.maxDepth + 1)
        XCTAssertThrowsError(try JSONPullReader(bytes: Array(deep.utf8)).skip())
        XCTAssertThrowsError(try JSONPullReader(bytes: Array(deep.utf8)).raw(limit: 1 << 20))
        XCTAssertThrowsError(try Self.parse(deep, chunk: 1 << 20))
        let ok = String(repeating: "[", count: JSONPullReader.maxDepth) + String(repeating: "]", count: JSONPullReader.maxDepth)
        XCTAssertNoThrow(try JSONPullReader(bytes: Array(ok.utf8)).skip())
    }

    func testReadsAFileInPieces() throws {
        let path = NSTemporaryDirectory() + "pull-\(getpid()).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let rows = (0..<300).map { r in (0..<64).map { ($0 * 7919 + r * 104729) % 1000 - 500 } }
        try JSONEncoder().encode(["rows": rows]).write(to: URL(fileURLWithPath: path))
        let r = try JSONPullReader(path: path, chunk: 1000)
        var read: [[Int]] = []
        try r.object { _ in read = try r.intRows() }
        try r.end()
        XCTAssertEqual(read, rows)
        XCTAssertThrowsError(try JSONPullReader(path: path + ".missing"))
    }
}
