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
            return "\(path): wrong magic \(found) (expected \(expected)); is this really a \(expected) file?"
        case let .unsupportedVersion(path, version):
            return "\(path): unsupported GGUF version \(version) (this build reads versions 2 and 3)"
        case let .truncated(path, offset, needed, what):
            return "\(path): file ends inside \(what): needed \(needed) byte(s) at offset \(offset); the file is truncated or damaged"
        case let .implausible(path, what, value, offset):
            let at = offset.map { " at offset \($0)" } ?? ""
            return "\(path): implausible \(what) \(value)\(at); the file is damaged or not a model"
        case let .invalidMetadata(path, key, reason):
            return "\(path): metadata \(key): \(reason)"
        case let .invalidTensor(path, tensor, reason):
            return (path.isEmpty ? "" : "\(path): ") + "tensor \(tensor): \(reason)"
        case let .tensorOutOfBounds(path, tensor, end, fileSize):
            return "\(path): tensor \(tensor) data ends at byte \(end), past the end of the file (\(fileSize) bytes); the file is truncated"
        case let .missingTensor(name, model):
            return "\(model): required tensor \(name) is missing"
        case let .shapeMismatch(tensor, expected, found):
            return "tensor \(tensor) has shape \(found), expected \(expected) from the model configuration"
        case let .unsupportedType(tensor, type):
            return "tensor \(tensor) has type \(type), which this build cannot compute with yet"
        case let .unknownArchitecture(name, known):
            return "unknown architecture '\(name)'; this build knows \(known.joined(separator: ", "))"
        case let .invalidConfig(path, reason):
            return "\(path): invalid model configuration: \(reason)"
        case let .missingConfigKey(path, key):
            return "\(path): model configuration lacks required key '\(key)'"
        }
    }
}
