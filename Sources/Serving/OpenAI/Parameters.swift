/// The parameters of one request body, taken one by one and type-checked; whatever is left
/// at the end is a parameter the server does not support (400, never silently ignored).
struct Parameters {
    private var remaining: [String: JSONValue]
    /// Where these parameters sit in the body, for `param` in errors ("messages[2].").
    private let prefix: String

    init(_ object: [String: JSONValue], prefix: String = "") {
        remaining = object
        self.prefix = prefix
    }

    /// Removes `key`; missing and `null` are both nil (OpenAI treats an explicit null as absent).
    mutating func take(_ key: String) -> JSONValue? {
        guard let value = remaining.removeValue(forKey: key), value != .null else { return nil }
        return value
    }

    func path(_ key: String) -> String { prefix + key }

    func wrongType(_ key: String, _ value: JSONValue, expected: String) -> APIError {
        .invalidRequest("'\(path(key))' must be \(expected), not \(value.typeName).", param: path(key))
    }

    mutating func string(_ key: String) throws(APIError) -> String? {
        guard let value = take(key) else { return nil }
        guard case let .string(s) = value else { throw wrongType(key, value, expected: "a string") }
        return s
    }

    mutating func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = take(key) else { return nil }
        guard case let .bool(b) = value else { throw wrongType(key, value, expected: "a boolean") }
        return b
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int64>) throws(APIError) -> Int64? {
        guard let value = take(key) else { return nil }
        let integer: Int64
        switch value {
        case let .integer(i): integer = i
        case let .number(d) where Int64(exactly: d) != nil: integer = Int64(exactly: d) ?? 0  // 2.0, 1e3; not 2^63
        default: throw wrongType(key, value, expected: "an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        guard range.contains(integer) else {
            throw .invalidRequest("'\(path(key))' must be from \(range.lowerBound) to \(range.upperBound), got \(integer).", param: path(key))
        }
        return integer
    }

    /// A number in `range`; `openLower` excludes the lower bound.
    mutating func number(_ key: String, in range: ClosedRange<Double>, openLower: Bool = false) throws(APIError) -> Double? {
        guard let value = take(key) else { return nil }
        let number: Double
        switch value {
        case let .integer(i): number = Double(i)
        case let .number(d): number = d
        default: throw wrongType(key, value, expected: "a number")
        }
        guard range.contains(number), !(openLower && number == range.lowerBound) else {
            let interval = "\(openLower ? "(" : "[")\(range.lowerBound), \(range.upperBound)]"
            throw .invalidRequest("'\(path(key))' must be in \(interval), got \(number).", param: path(key))
        }
        return number
    }

    /// A parameter OpenAI defines but this server supports only at its default: accepted when
    /// absent, null or equal to `supported`.
    mutating func onlyDefault(_ key: String, _ supported: JSONValue, _ explanation: String) throws(APIError) {
        guard let value = take(key) else { return }
        let equal: Bool
        switch (value, supported) {
        case let (.integer(a), .number(b)), let (.number(b), .integer(a)): equal = Double(a) == b
        default: equal = value == supported
        }
        guard equal else { throw .invalidRequest("'\(path(key))' is not supported except at its default: \(explanation).", param: path(key)) }
    }

    /// Throws for the first parameter nobody took.
    func finish(supported: [String]) throws(APIError) {
        guard let key = remaining.keys.sorted().first else { return }
        throw .invalidRequest("Unsupported parameter '\(path(key))'. Supported: \(supported.joined(separator: ", ")).", param: path(key),
                              code: "unsupported_parameter")
    }
}
