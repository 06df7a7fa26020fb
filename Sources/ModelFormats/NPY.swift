import Foundation

/// NumPy `.npy` files (format 1.0) of little-endian float32, the interchange format of
/// `moe logits --out` and of the test fixtures.
///
/// ### Layout
///
///     | "\x93NUMPY" | 0x01 0x00 | u16 header_len | header (Python dict literal, padded
///       with spaces and a final '\n' so data starts at a multiple of 64) | data |
public enum NPY {
    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case notNPY(path: String)
        case unsupported(path: String, header: String)
        case truncated(path: String)

        public var description: String {
            switch self {
            case let .notNPY(path): return "\(path): not a .npy file"
            case let .unsupported(path, header): return "\(path): only C-order little-endian float32 arrays are read; header is \(header)"
            case let .truncated(path): return "\(path): data shorter than the header's shape says"
            }
        }
    }

    /// Encodes a C-order float32 array of the given shape.
    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "shape does not match element count")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (alignUp(unpadded, to: 64) ?? unpadded) - unpadded) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        values.withUnsafeBufferPointer { buffer in
            for v in buffer {
                withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
            }
        }
        return data
    }

    public static func write(_ values: [Float], shape: [Int], to path: String) throws {
        try encode(values, shape: shape).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Reads a C-order little-endian float32 array.
    public static func read(path: String) throws -> (values: [Float], shape: [Int]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelFormatError.cannotOpen(path: path, reason: "cannot read file")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { throw Error.notNPY(path: path) }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw Error.notNPY(path: path) }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard bytes.count >= headerStart + headerLength else { throw Error.truncated(path: path) }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
            let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { throw Error.unsupported(path: path, header: header) }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let start = headerStart + headerLength
        guard bytes.count >= start + 4 * count else { throw Error.truncated(path: path) }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                values[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self)))
            }
        }
        return (values, shape)
    }
}
