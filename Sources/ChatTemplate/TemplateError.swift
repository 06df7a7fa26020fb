/// A place in the template source, 1-based.
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public var description: String { "line \(line), column \(column)" }
}

/// Why a chat template could not be parsed or rendered. Every case names where in the
/// template it happened, so the user can find the construct we do not support.
public enum TemplateError: Error, Equatable, CustomStringConvertible {
    /// The template text is not valid Jinja (or uses syntax we do not support).
    case syntax(String, SourceLocation)
    /// Evaluation failed: an unknown filter, a type error, an undefined attribute, ...
    case render(String, SourceLocation)
    /// The template itself refused the conversation through `raise_exception(message)`.
    case raised(String, SourceLocation)

    public var description: String {
        switch self {
        case let .syntax(m, l): return "chat template syntax error at \(l): \(Self.oneLine(m))"
        case let .render(m, l): return "chat template error at \(l): \(Self.oneLine(m))"
        case let .raised(m, l): return "the chat template rejected the conversation (\(l)): \(Self.oneLine(m))"
        }
    }

    /// Messages carry text from the template (a model file): shown on one line, control and
    /// invisible characters escaped, cut after ``messageLimit`` characters.
    static func oneLine(_ message: String) -> String {
        let scalars = message.unicodeScalars
        var out = scalars.prefix(messageLimit).map { c -> String in
            switch c.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: return c.escaped(asASCII: true)
            default: return String(c)
            }
        }.joined()
        if scalars.count > messageLimit { out += "… (\(scalars.count - messageLimit) more characters)" }
        return out
    }

    static let messageLimit = 300
}
