import ModelFormats

/// What can go wrong loading a tokenizer. Tokenizer files are untrusted: every problem is a
/// thrown error whose message names the file and the item, never a crash.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// A file or directory could not be read.
    case cannotRead(path: String, reason: String)
    /// A required key (GGUF metadata key or JSON path) is absent.
    case missingKey(source: String, key: String)
    /// A key is present but its value is unusable.
    case invalidValue(source: String, key: String, reason: String)
    /// The file is well-formed but asks for something this implementation does not do.
    case unsupported(source: String, feature: String)

    public var description: String {
        switch self {
        case let .cannotRead(path, reason):
            return "\(path): cannot read tokenizer: \(reason)"
        case let .missingKey(source, key):
            return "\(source): tokenizer key \(key) is missing; the file has no usable tokenizer"
        case let .invalidValue(source, key, reason):
            return "\(source): tokenizer key \(key): \(reason)"
        case let .unsupported(source, feature):
            return "\(source): unsupported tokenizer feature: \(feature)"
        }
    }
}

/// Text from a tokenizer file as errors and notes quote it: escaped and cut (``ModelFormatError/shown(_:)``).
func quoted(_ text: String) -> String { "\"" + ModelFormatError.shown(text) + "\"" }
