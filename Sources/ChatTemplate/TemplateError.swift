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
        case let .syntax(m, l): return "chat template syntax error at \(l): \(m)"
        case let .render(m, l): return "chat template error at \(l): \(m)"
        case let .raised(m, l): return "the chat template rejected the conversation (\(l)): \(m)"
        }
    }
}
