import Foundation

/// A JSON value of an untrusted request body. Decoded with `JSONDecoder`, which checks the
/// syntax, limits nesting depth and keeps booleans, integers and other numbers apart, so a
/// parameter's type is checked exactly (`"n": true` is not `1`).
///
/// Responses are built as values of this type too (explicit `null`s where OpenAI writes them).
enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in 64 bits.
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let value = try? c.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? c.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? c.decode(Double.self) {
            self = .number(value)
        } else if let value = try? c.decode(String.self) {
            self = .string(value)
        } else if let value = try? c.decode([JSONValue].self) {
            self = .array(value)
        } else if let value = try? c.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not a JSON value this server reads (a number out of range, or a string that is not UTF-8)"))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .integer(i): try c.encode(i)
        case let .number(d): try c.encode(d.isFinite ? d : 0)
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    static func int(_ value: Int) -> JSONValue { .integer(Int64(value)) }

    /// Parses a request body that must be a JSON object.
    static func object(from body: Data) throws(APIError) -> [String: JSONValue] {
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: body) } catch {
            throw .invalidRequest("The body is not valid JSON: \(Self.reason(error))")
        }
        guard case let .object(object) = value else { throw .invalidRequest("The body must be a JSON object.") }
        return object
    }

    private static func reason(_ error: any Error) -> String {
        guard case let DecodingError.dataCorrupted(context) = error else { return "\(error)" }
        let detail = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return path.isEmpty ? detail : "at \(path.hasPrefix(".") ? String(path.dropFirst()) : path): \(detail)"
    }

    var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// How OpenAI's documentation names the type, for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .integer, .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
