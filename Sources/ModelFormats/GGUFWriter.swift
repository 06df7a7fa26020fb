import Foundation
import Quantization

/// Writes GGUF v3 files: metadata in the order added, tensors aligned to `alignment`.
///
/// Used by tests (to build damaged or synthetic models) and by tools that generate models.
public struct GGUFWriter {
    public struct Tensor {
        public var name: String
        public var type: GGMLType
        /// ggml order (contiguous dimension first).
        public var shape: [Int]
        public var data: Data

        public init(name: String, type: GGMLType, shape: [Int], data: Data) {
            self.name = name
            self.type = type
            self.shape = shape
            self.data = data
        }
    }

    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [Tensor] = []
    public var alignment = GGUFFile.defaultAlignment
    public var version: UInt32 = 3

    public init() {}

    /// Starts from an existing file's metadata and tensors (copied), e.g. to edit one thing.
    public init(copying file: GGUFFile) {
        metadata = file.metadataKeys.map { ($0, file.metadata[$0]!) }  // keys come from the same dictionary
        alignment = file.alignment
        for info in file.tensors {
            guard let view = file.tensor(info.name) else { continue }
            tensors.append(Tensor(name: info.name, type: info.type, shape: info.dimensions, data: Data(view.data)))
        }
    }

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i].value = value
        } else {
            metadata.append((key, value))
        }
    }

    public mutating func remove(key: String) { metadata.removeAll { $0.key == key } }

    public func encode() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            out.append(contentsOf: Array(s.utf8))
        }
        func typeTag(_ v: GGUFValue) -> GGUFValueType {
            switch v {
            case .uint8: return .uint8
            case .int8: return .int8
            case .uint16: return .uint16
            case .int16: return .int16
            case .uint32: return .uint32
            case .int32: return .int32
            case .uint64: return .uint64
            case .int64: return .int64
            case .float32: return .float32
            case .float64: return .float64
            case .bool: return .bool
            case .string: return .string
            case .array: return .array
            }
        }
        func value(_ v: GGUFValue) {
            switch v {
            case let .uint8(x): out.append(x)
            case let .int8(x): out.append(UInt8(bitPattern: x))
            case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .int16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .uint64(x): u64(x)
            case let .int64(x): u64(UInt64(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .float64(x): u64(x.bitPattern)
            case let .bool(x): out.append(x ? 1 : 0)
            case let .string(s): string(s)
            case let .array(type, items):
                u32(type.rawValue)
                u64(UInt64(items.count))
                for item in items { value(item) }
            }
        }

        u32(GGUFFile.magic)
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, v) in metadata {
            string(key)
            u32(typeTag(v).rawValue)
            value(v)
        }
        // Sizes of in-memory data, far from Int.max: rounding them up cannot overflow.
        func padding(after count: Int) -> Int { (alignUp(count, to: alignment) ?? count) - count }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += t.data.count + padding(after: t.data.count)
        }
        for (t, o) in zip(tensors, offsets) {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(o))
        }
        out.append(contentsOf: [UInt8](repeating: 0, count: padding(after: out.count)))
        for t in tensors {
            out.append(t.data)
            out.append(contentsOf: [UInt8](repeating: 0, count: padding(after: t.data.count)))
        }
        return out
    }

    public func write(to path: String) throws {
        try encode().write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
