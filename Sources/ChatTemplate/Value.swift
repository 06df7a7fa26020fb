import Foundation
import Synchronization

/// A value inside a template: Python/Jinja semantics for truth, equality, `str()` and JSON.
public enum TemplateValue: Sendable {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    case object(TemplateObject)
    /// A `namespace(...)` object: mutable through `{% set ns.attr = ... %}`.
    case namespace(Namespace)
    case callable(Callable)

    /// Ordered string-keyed mapping (Python dicts keep insertion order; `tojson` relies on it).
    public struct TemplateObject: Sendable, Equatable {
        public private(set) var keys: [String] = []
        private var storage: [String: TemplateValue] = [:]
        public init() {}
        public init(_ pairs: [(String, TemplateValue)]) { for (k, v) in pairs { self[k] = v } }
        public subscript(key: String) -> TemplateValue? {
            get { storage[key] }
            set {
                if let newValue {
                    if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
                } else if storage.removeValue(forKey: key) != nil {
                    keys.removeAll { $0 == key }
                }
            }
        }
        public var count: Int { keys.count }
        public var pairs: [(String, TemplateValue)] { keys.map { ($0, storage[$0]!) } }
        public static func == (a: TemplateObject, b: TemplateObject) -> Bool {
            guard a.count == b.count else { return false }
            for k in a.keys { guard let y = b.storage[k], a.storage[k]!.pyEquals(y) else { return false } }
            return true
        }
    }

    /// The attributes live behind a lock, so a namespace is `Sendable` without exceptions.
    public final class Namespace: Sendable {
        private let storage: Mutex<TemplateObject>
        init(_ attributes: TemplateObject) { storage = Mutex(attributes) }
        /// A copy of all attributes.
        var attributes: TemplateObject { storage.withLock { $0 } }
        subscript(name: String) -> TemplateValue? {
            get { storage.withLock { $0[name] } }
            set { storage.withLock { $0[name] = newValue } }
        }
    }

    /// A function value (`range`, a macro, `"s".strip`).
    ///
    /// `@unchecked Sendable`: `body` is not `@Sendable` because a macro's body captures the
    /// mutable scopes of the render that defined it. Sharing is still safe because a
    /// `Callable` never leaves that render: only the interpreter creates one (the initializer
    /// is internal), it lives in the render's scopes and values, and `render` returns a string
    /// and throws errors that carry text, so every call runs on the thread doing the render.
    public final class Callable: @unchecked Sendable {
        let name: String
        let body: (_ args: [TemplateValue], _ kwargs: [(String, TemplateValue)]) throws -> TemplateValue
        init(_ name: String, _ body: @escaping ([TemplateValue], [(String, TemplateValue)]) throws -> TemplateValue) {
            self.name = name
            self.body = body
        }
    }
}

extension TemplateValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(arrayLiteral elements: TemplateValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, TemplateValue)...) { self = .object(TemplateObject(elements)) }
}

extension TemplateValue {
    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return o.count > 0
        case .namespace, .callable: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// Numeric value for arithmetic and comparison (bools count as ints, as in Python).
    var number: Double? {
        switch self {
        case let .bool(b): return b ? 1 : 0
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case let .bool(b): return b ? 1 : 0
        case let .int(i): return i
        default: return nil
        }
    }

    /// Python `==`.
    func pyEquals(_ other: TemplateValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(a), .string(b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case let (.array(a), .array(b)): return a.count == b.count && zip(a, b).allSatisfy { $0.pyEquals($1) }
        case let (.object(a), .object(b)): return a == b
        case let (.namespace(a), .namespace(b)): return a === b
        case let (.callable(a), .callable(b)): return a === b
        default:
            if let x = number, let y = other.number { return x == y }
            return false
        }
    }

    /// Python `str()`; Jinja prints this for `{{ value }}` (undefined prints nothing).
    var pyStr: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pyRepr
        }
    }

    /// Python `repr()`.
    var pyRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return Self.pyFloat(d)
        case let .string(s): return Self.pyQuote(s)
        case let .array(a): return "[" + a.map(\.pyRepr).joined(separator: ", ") + "]"
        case let .object(o): return "{" + o.pairs.map { Self.pyQuote($0.0) + ": " + $0.1.pyRepr }.joined(separator: ", ") + "}"
        case let .namespace(n): return "<Namespace " + TemplateValue.object(n.attributes).pyRepr + ">"
        case let .callable(c): return "<function \(c.name)>"
        }
    }

    static func pyFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    static func pyQuote(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote { out += "\\" + String(quote) }
                else if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\x%02x", u.value) }
                else { out.unicodeScalars.append(u) }
            }
        }
        out.append(quote)
        return out
    }

    /// `json.dumps(value, ensure_ascii=False, indent=indent)` as transformers' `tojson` filter.
    func json(indent: Int?, level: Int = 0) throws -> String {
        let itemSeparator = indent == nil ? ", " : ","
        func newline(_ depth: Int) -> String { indent.map { "\n" + String(repeating: " ", count: $0 * depth) } ?? "" }
        switch self {
        case .undefined: throw TemplateValueError("Object of type Undefined is not JSON serializable")
        case .none: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
            return Self.pyFloat(d)
        case let .string(s): return Self.jsonQuote(s)
        case let .array(a):
            if a.isEmpty { return "[]" }
            let items = try a.map { try newline(level + 1) + $0.json(indent: indent, level: level + 1) }
            return "[" + items.joined(separator: itemSeparator) + newline(level) + "]"
        case let .object(o):
            if o.count == 0 { return "{}" }
            let items = try o.pairs.map { try newline(level + 1) + Self.jsonQuote($0.0) + ": " + $0.1.json(indent: indent, level: level + 1) }
            return "{" + items.joined(separator: itemSeparator) + newline(level) + "}"
        case let .namespace(n): return try TemplateValue.object(n.attributes).json(indent: indent, level: level)
        case .callable: throw TemplateValueError("Object of type function is not JSON serializable")
        }
    }

    static func jsonQuote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}

/// A failure inside a value operation; the interpreter attaches the template location.
struct TemplateValueError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
