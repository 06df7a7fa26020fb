/// Everything that can be wrong with a model file or directory a user hands us.
///
/// Every case names the file and what is wrong there, so the message alone tells the user
/// what to fix. Model files are untrusted input: readers throw these, they never trap.
public enum ModelFormatError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case notAModel(path: String, reason: String)
    case badMagic(path: String, found: String, expected: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, offset: Int, needed: Int, what: String)
    case implausible(path: String, what: String, value: String, offset: Int?)
    case invalidMetadata(path: String, key: String, reason: String)
    case invalidTensor(path: String, tensor: String, reason: String)
    case tensorOutOfBounds(path: String, tensor: String, end: Int, fileSize: Int)
    case missingTensor(String, model: String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case unsupportedType(tensor: String, type: String)
    case unknownArchitecture(String, known: [String])
    case invalidConfig(path: String, reason: String)
    case missingConfigKey(path: String, key: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "\(path): cannot open: \(reason)"
        case let .notAModel(path, reason):
            return "\(path): not a model this tool reads: \(reason)"
        case let .badMagic(path, found, expected):
            return "\(path): wrong magic \(Self.shown(found)) (expected \(expected)); is this really a \(expected) file?"
        case let .unsupportedVersion(path, version):
            return "\(path): unsupported GGUF version \(version) (this build reads versions 2 and 3)"
        case let .truncated(path, offset, needed, what):
            return "\(path): file ends inside \(Self.shown(what)): needed \(needed) byte(s) at offset \(offset); the file is truncated or damaged"
        case let .implausible(path, what, value, offset):
            let at = offset.map { " at offset \($0)" } ?? ""
            return "\(path): implausible \(Self.shown(what)) \(Self.shown(value))\(at); the file is damaged or not a model"
        case let .invalidMetadata(path, key, reason):
            return "\(path): metadata \(Self.shown(key)): \(reason)"
        case let .invalidTensor(path, tensor, reason):
            return (path.isEmpty ? "" : "\(path): ") + "tensor \(Self.shown(tensor)): \(reason)"
        case let .tensorOutOfBounds(path, tensor, end, fileSize):
            return "\(path): tensor \(Self.shown(tensor)) data ends at byte \(end), past the end of the file (\(fileSize) bytes); the file is truncated"
        case let .missingTensor(name, model):
            return "\(model): required tensor \(Self.shown(name)) is missing"
        case let .shapeMismatch(tensor, expected, found):
            return "tensor \(Self.shown(tensor)) has shape \(found), expected \(expected) from the model configuration"
        case let .unsupportedType(tensor, type):
            return "tensor \(Self.shown(tensor)) has type \(type), which this build cannot compute with yet"
        case let .unknownArchitecture(name, known):
            return "unknown architecture '\(Self.shown(name))'; this build knows \(known.joined(separator: ", "))"
        case let .invalidConfig(path, reason):
            return "\(path): invalid model configuration: \(reason)"
        case let .missingConfigKey(path, key):
            return "\(path): model configuration lacks required key '\(Self.shown(key))'"
        }
    }

    /// Text taken from a file (keys, tensor names, values), as an error shows it: control and
    /// non-printing characters escaped, and cut to ``shownLimit`` characters, so a damaged
    /// length that swallowed raw bytes gives a one-line message, not pages of them.
    public static func shown(_ text: String) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == shownLimit {
                out += "… (\(text.unicodeScalars.count - count) more characters)"
                break
            }
            switch scalar.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator:
                out += scalar.escaped(asASCII: true)
            default:
                out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return out
    }

    /// How many characters of file-supplied text an error shows.
    public static let shownLimit = 120

    /// Why JSON from a file did not decode, as an error shows it: where (the key path) and what,
    /// each escaped and cut like ``shown(_:)``, instead of `DecodingError`'s multi-line dump.
    public static func shown(decoding error: any Error) -> String {
        let context: DecodingError.Context
        switch error as? DecodingError {
        case let .typeMismatch(_, c)?, let .valueNotFound(_, c)?, let .keyNotFound(_, c)?, let .dataCorrupted(c)?: context = c
        default: return shown("\(error)")
        }
        var what = context.debugDescription
        if case let .keyNotFound(key, _)? = error as? DecodingError { what = "missing key \(key.stringValue)" }
        if let underlying = context.underlyingError { what += " (\(underlying.localizedDescription))" }
        let at = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return (at.isEmpty ? "" : "at \(shown(String(at.drop { $0 == "." }))): ") + shown(what)
    }
}
