import Quantization

/// A metadata value of a GGUF file. Arrays keep their element type so files round-trip.
public indirect enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFValueType, [GGUFValue])

    /// Any integer value (or a bool as 0/1) as `Int`, if it fits.
    public var int: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        case let .bool(v): return v ? 1 : 0
        default: return nil
        }
    }

    /// Any numeric value as `Double`.
    public var double: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? { if case let .string(s) = self { return s } else { return nil } }
    public var bool: Bool? { if case let .bool(b) = self { return b } else { return int.map { $0 != 0 } } }
    public var array: [GGUFValue]? { if case let .array(_, a) = self { return a } else { return nil } }
}

/// The type tags of GGUF metadata values (`enum gguf_type`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// The smallest encoded size of one value, used to reject absurd array counts early.
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// Where one tensor lives in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dimensions[0]` is contiguous.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
}

/// A parsed GGUF file (versions 2 and 3, little-endian).
///
/// The file is memory-mapped; ``tensor(_:)`` returns views into the mapping without copying.
///
/// ### Layout
///
///     | "GGUF" | u32 version | u64 tensor_count | u64 kv_count |
///     | kv_count x (string key, u32 type, value) |
///     | tensor_count x (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset) |
///     | padding to general.alignment (default 32) | tensor data ... |
///
/// Strings are a u64 length followed by UTF-8 bytes; arrays are u32 element type, u64 count,
/// then the elements.
public final class GGUFFile: Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian
    public static let defaultAlignment = 32

    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    public let file: MappedFile
    private let index: [String: Int]

    /// Limits that keep a damaged header from making us allocate or loop absurdly.
    static let maxTensorCount = 1 << 24
    static let maxKeyCount = 1 << 20
    static let maxStringLength = 1 << 26
    static let maxDimensions = 4
    static let maxArrayDepth = 8
    static let maxArrayLength = 1 << 28

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        self.path = file.path
        var reader = ByteReader(file.bytes, path: file.path)
        let path = file.path

        let magic = try reader.read(UInt32.self, "the GGUF magic")
        guard magic == GGUFFile.magic else {
            throw ModelFormatError.badMagic(path: path, found: GGUFFile.describeMagic(magic), expected: "GGUF")
        }
        version = try reader.read(UInt32.self, "the GGUF version")
        guard version == 2 || version == 3 else {
            throw ModelFormatError.unsupportedVersion(path: path, version: version)
        }
        let tensorCount = try reader.read(UInt64.self, "the tensor count")
        let keyCount = try reader.read(UInt64.self, "the metadata count")
        guard tensorCount <= UInt64(GGUFFile.maxTensorCount) else {
            throw ModelFormatError.implausible(path: path, what: "tensor count", value: "\(tensorCount)", offset: 8)
        }
        guard keyCount <= UInt64(GGUFFile.maxKeyCount) else {
            throw ModelFormatError.implausible(path: path, what: "metadata count", value: "\(keyCount)", offset: 16)
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for k in 0..<Int(keyCount) {
            let keyOffset = reader.offset
            let key = try GGUFFile.readString(&reader, "metadata key #\(k)")
            let rawType = try reader.read(UInt32.self, "the type of metadata \(key)")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw ModelFormatError.invalidMetadata(path: path, key: key, reason: "unknown value type \(rawType) at offset \(keyOffset)")
            }
            let value = try GGUFFile.readValue(&reader, type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw ModelFormatError.invalidMetadata(path: path, key: key, reason: "duplicate key at offset \(keyOffset)")
            }
            keys.append(key)
        }
        self.metadata = metadata
        self.metadataKeys = keys

        var alignment = GGUFFile.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard let a = value.int, a > 0, a <= 1 << 20, a & (a - 1) == 0 else {
                throw ModelFormatError.invalidMetadata(path: path, key: "general.alignment", reason: "must be a power of two, found \(value)")
            }
            alignment = a
        }
        self.alignment = alignment

        struct RawInfo { let name: String; let dims: [Int]; let type: GGMLType; let offset: Int; let bytes: Int }
        var infos: [RawInfo] = []
        infos.reserveCapacity(Int(tensorCount))
        var seen = Set<String>()
        for t in 0..<Int(tensorCount) {
            let name = try GGUFFile.readString(&reader, "the name of tensor #\(t)")
            let dimCount = try reader.read(UInt32.self, "the dimension count of tensor \(name)")
            guard dimCount >= 1, dimCount <= UInt32(GGUFFile.maxDimensions) else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "\(dimCount) dimensions (1 to \(GGUFFile.maxDimensions) allowed)")
            }
            var dims: [Int] = []
            var elements = 1
            for d in 0..<Int(dimCount) {
                let raw = try reader.read(UInt64.self, "dimension \(d) of tensor \(name)")
                guard raw <= UInt64(Int32.max) else {
                    throw ModelFormatError.implausible(path: path, what: "dimension \(d) of tensor \(name):", value: "\(raw)", offset: reader.offset - 8)
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(raw))
                guard !overflow, product <= 1 << 48 else {
                    throw ModelFormatError.implausible(path: path, what: "element count of tensor \(name):", value: "\(dims + [Int(raw)])", offset: nil)
                }
                elements = product
                dims.append(Int(raw))
            }
            let rawType = try reader.read(UInt32.self, "the type of tensor \(name)")
            guard let type = GGMLType(rawValue: rawType) else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "unknown ggml type id \(rawType)")
            }
            let offset = try reader.read(UInt64.self, "the data offset of tensor \(name)")
            guard offset <= UInt64(Int.max / 2), Int(offset) % alignment == 0 else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            guard dims[0] % type.traits.blockSize == 0, let bytes = type.traits.byteCount(elements: elements) else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "row length \(dims[0]) is not a multiple of the \(type) block size \(type.traits.blockSize)")
            }
            guard seen.insert(name).inserted else {
                throw ModelFormatError.invalidTensor(path: path, tensor: name, reason: "appears twice in the tensor list")
            }
            infos.append(RawInfo(name: name, dims: dims, type: type, offset: Int(offset), bytes: bytes))
        }

        let headerEnd = reader.offset
        guard let dataOffset = alignUp(headerEnd, to: alignment) else {
            throw ModelFormatError.implausible(path: path, what: "header end", value: "\(headerEnd)", offset: nil)
        }
        self.dataOffset = dataOffset
        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for info in infos {
            let end = dataOffset + info.offset + info.bytes
            guard end <= file.size else {
                throw ModelFormatError.tensorOutOfBounds(path: path, tensor: info.name, end: end, fileSize: file.size)
            }
            index[info.name] = tensors.count
            tensors.append(GGUFTensorInfo(name: info.name, dimensions: info.dims, type: info.type, offset: info.offset, byteCount: info.bytes))
        }
        self.tensors = tensors
        self.index = index
    }

    /// A view of the named tensor, or `nil` if the file has none.
    public func tensor(_ name: String) -> TensorView? {
        guard let i = index[name] else { return nil }
        let info = tensors[i]
        let start = dataOffset + info.offset
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + info.byteCount)])
        return TensorView(name: info.name, type: info.type, shape: info.dimensions, data: bytes, owner: file)
    }

    /// The architecture name (`general.architecture`).
    public var architecture: String? { metadata["general.architecture"]?.string }

    private static func describeMagic(_ magic: UInt32) -> String {
        let bytes = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            return "'" + String(decoding: bytes, as: UTF8.self) + "'"
        }
        return bytes.map { String($0, radix: 16) }.joined(separator: " ")
    }

    private static func readString(_ reader: inout ByteReader, _ what: @autoclosure () -> String) throws -> String {
        let start = reader.offset
        let length = try reader.read(UInt64.self, "the length of \(what())")
        guard length <= UInt64(maxStringLength) else {
            throw ModelFormatError.implausible(path: reader.path, what: "length of \(what())", value: "\(length)", offset: start)
        }
        return try reader.readString(count: Int(length), what())
    }

    private static func readValue(_ reader: inout ByteReader, type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        let what = "the value of metadata \(key)"
        switch type {
        case .uint8: return .uint8(try reader.read(UInt8.self, what))
        case .int8: return .int8(try reader.read(Int8.self, what))
        case .uint16: return .uint16(try reader.read(UInt16.self, what))
        case .int16: return .int16(try reader.read(Int16.self, what))
        case .uint32: return .uint32(try reader.read(UInt32.self, what))
        case .int32: return .int32(try reader.read(Int32.self, what))
        case .uint64: return .uint64(try reader.read(UInt64.self, what))
        case .int64: return .int64(try reader.read(Int64.self, what))
        case .float32: return .float32(try reader.readFloat(what))
        case .float64: return .float64(try reader.readDouble(what))
        case .bool:
            let raw = try reader.read(UInt8.self, what)
            guard raw <= 1 else {
                throw ModelFormatError.invalidMetadata(path: reader.path, key: key, reason: "bool value \(raw) at offset \(reader.offset - 1)")
            }
            return .bool(raw == 1)
        case .string: return .string(try readString(&reader, what))
        case .array:
            guard depth < maxArrayDepth else {
                throw ModelFormatError.invalidMetadata(path: reader.path, key: key, reason: "arrays nested deeper than \(maxArrayDepth)")
            }
            let rawType = try reader.read(UInt32.self, "the element type of metadata \(key)")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw ModelFormatError.invalidMetadata(path: reader.path, key: key, reason: "unknown array element type \(rawType) at offset \(reader.offset - 4)")
            }
            let countOffset = reader.offset
            let count = try reader.read(UInt64.self, "the length of metadata \(key)")
            // Past a fixed bound the count is nonsense; below it, more elements than the rest of
            // the file can hold means the file is truncated.
            guard count <= UInt64(maxArrayLength) else {
                throw ModelFormatError.implausible(path: reader.path, what: "array length of metadata \(key):", value: "\(count)", offset: countOffset)
            }
            try reader.need(Int(count) * elementType.minimumSize, "the \(count) elements of metadata \(key)")
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                values.append(try readValue(&reader, type: elementType, key: key, depth: depth + 1))
            }
            return .array(elementType, values)
        }
    }
}
