import Foundation
import Quantization

/// A parsed `.safetensors` file.
///
/// ### Layout
///
///     | u64 header_length | JSON header (header_length bytes) | data ... |
///
/// The header maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`,
/// offsets relative to the start of the data; `__metadata__` holds free-form strings.
/// Shapes are row-major (outermost first); views reverse them into ggml order.
public final class SafetensorsFile: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let dtype: String
        /// Row-major shape as stored (outermost first).
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    public let file: MappedFile
    let dataOffset: Int

    static let maxHeaderLength = 1 << 28

    /// The element types we can view; others are listed but cannot be loaded.
    static func ggmlType(_ dtype: String) -> GGMLType? {
        switch dtype {
        case "F32": return .f32
        case "F16": return .f16
        case "BF16": return .bf16
        case "F64": return .f64
        case "I8": return .i8
        case "I16": return .i16
        case "I32": return .i32
        case "I64": return .i64
        default: return nil
        }
    }

    static let elementSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
        "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
    ]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        var reader = ByteReader(file.bytes, path: path)
        let headerLength = try reader.read(UInt64.self, "the safetensors header length")
        guard headerLength <= UInt64(SafetensorsFile.maxHeaderLength) else {
            throw ModelFormatError.implausible(path: path, what: "safetensors header length", value: "\(headerLength)", offset: 0)
        }
        let header = try reader.readBytes(Int(headerLength), "the safetensors JSON header")
        dataOffset = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(header), options: [])
        } catch {
            throw ModelFormatError.notAModel(path: path, reason: "safetensors header is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw ModelFormatError.notAModel(path: path, reason: "safetensors header is not a JSON object")
        }
        let dataSize = file.size - dataOffset
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                if let m = value as? [String: Any] {
                    for (k, v) in m { metadata[k] = "\(v)" }
                }
                continue
            }
            guard let fields = value as? [String: Any],
                let dtype = fields["dtype"] as? String,
                let shapeValues = fields["shape"] as? [Any],
                let offsets = fields["data_offsets"] as? [Any], offsets.count == 2,
                let begin = (offsets[0] as? NSNumber)?.intValue, let end = (offsets[1] as? NSNumber)?.intValue
            else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "header entry lacks dtype, shape or data_offsets")
            }
            var shape: [Int] = []
            var elements = 1
            for s in shapeValues {
                guard let n = (s as? NSNumber)?.intValue, n >= 0, n <= Int(Int32.max) else {
                    throw ModelFormatError.implausible(path: path, what: "dimension of tensor \(name):", value: "\(s)", offset: nil)
                }
                let (p, overflow) = elements.multipliedReportingOverflow(by: n)
                guard !overflow, p <= 1 << 48 else {
                    throw ModelFormatError.implausible(path: path, what: "element count of tensor \(name):", value: "\(shapeValues)", offset: nil)
                }
                elements = p
                shape.append(n)
            }
            guard let elementSize = SafetensorsFile.elementSizes[dtype] else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "unknown dtype \(dtype)")
            }
            guard begin >= 0, end >= begin, end - begin == elements * elementSize else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "data_offsets [\(begin), \(end)] do not fit shape \(shape) of \(dtype)")
            }
            guard end <= dataSize else {
                throw ModelFormatError.tensorOutOfBounds(path: path, tensor: name, end: dataOffset + end, fileSize: file.size)
            }
            entries[name] = Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// A view of the named tensor in ggml order. Throws if its dtype cannot be viewed.
    public func tensor(_ name: String) throws -> TensorView? {
        guard let entry = entries[name] else { return nil }
        guard let type = SafetensorsFile.ggmlType(entry.dtype) else {
            throw ModelFormatError.unsupportedType(tensor: name, type: entry.dtype)
        }
        let start = dataOffset + entry.begin
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[start..<(dataOffset + entry.end)])
        let shape = entry.shape.isEmpty ? [1] : Array(entry.shape.reversed())
        return TensorView(name: name, type: type, shape: shape, data: bytes, owner: file)
    }
}
