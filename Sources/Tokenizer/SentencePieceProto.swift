import Foundation

/// The parts of a SentencePiece `tokenizer.model` (a serialized `sentencepiece.ModelProto`)
/// that tokenization needs, read with a small bounds-checked protobuf wire-format decoder.
///
/// ### Fields read (sentencepiece_model.proto)
/// ```
/// ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
/// SentencePiece   1 piece (string)  2 score (float)  3 type (NORMAL 1, UNKNOWN 2, CONTROL 3,
///                                                         USER_DEFINED 4, UNUSED 5, BYTE 6)
/// TrainerSpec     3 model_type (UNIGRAM 1, BPE 2, WORD 3, CHAR 4)  35 byte_fallback
///                 40 unk_id  41 bos_id  42 eos_id  43 pad_id  45 unk_piece
/// NormalizerSpec  1 name  2 precompiled_charsmap  3 add_dummy_prefix
///                 4 remove_extra_whitespaces  5 escape_whitespaces
/// ```
/// Every other field is skipped by its wire type, so newer files with more fields load.
public struct SentencePieceModelFile: Sendable {
    public enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public struct Piece: Sendable, Equatable {
        public var text: String
        public var score: Float
        public var type: PieceType
    }

    public enum ModelType: Int, Sendable {
        case unigram = 1, bpe = 2, word = 3, character = 4
    }

    public var pieces: [Piece] = []
    /// Proto default: UNIGRAM.
    public var modelType: ModelType = .unigram
    public var byteFallback = false
    public var unknownId = 0
    public var bosId = 1
    public var eosId = 2
    public var padId = -1
    public var unknownPiece = "<unk>"
    public var normalizerName = ""
    public var hasPrecompiledCharsmap = false
    /// Proto defaults: true, true, true.
    public var addDummyPrefix = true
    public var removeExtraWhitespaces = true
    public var escapeWhitespaces = true

    /// Largest piece count accepted (real models have at most a few hundred thousand).
    static let maxPieces = 16_777_216

    /// Decodes `data`; `path` names the file in errors.
    public init(data: Data, path: String) throws {
        var top = ProtoReader(bytes: [UInt8](data), path: path)
        while let (field, wire) = try top.nextField() {
            switch (field, wire) {
            case (1, .lengthDelimited):
                guard pieces.count < Self.maxPieces else { throw top.error("more than \(Self.maxPieces) pieces") }
                var r = try top.message()
                var piece = Piece(text: "", score: 0, type: .normal)
                while let (f, w) = try r.nextField() {
                    switch (f, w) {
                    case (1, .lengthDelimited): piece.text = try r.string()
                    case (2, .fixed32): piece.score = Float(bitPattern: try r.fixed32())
                    case (3, .varint):
                        let raw = try r.varint()
                        guard let t = PieceType(rawValue: Int(truncatingIfNeeded: raw)) else {
                            throw r.error("piece \(pieces.count) has unknown type \(raw)")
                        }
                        piece.type = t
                    default: try r.skip(w)
                    }
                }
                pieces.append(piece)
            case (2, .lengthDelimited):
                var r = try top.message()
                while let (f, w) = try r.nextField() {
                    switch (f, w) {
                    case (3, .varint):
                        let raw = try r.varint()
                        guard let t = ModelType(rawValue: Int(truncatingIfNeeded: raw)) else {
                            throw r.error("trainer_spec.model_type \(raw) is not a known model type")
                        }
                        modelType = t
                    case (35, .varint): byteFallback = try r.varint() != 0
                    case (40, .varint): unknownId = try r.int32()
                    case (41, .varint): bosId = try r.int32()
                    case (42, .varint): eosId = try r.int32()
                    case (43, .varint): padId = try r.int32()
                    case (45, .lengthDelimited): unknownPiece = try r.string()
                    default: try r.skip(w)
                    }
                }
            case (3, .lengthDelimited):
                var r = try top.message()
                while let (f, w) = try r.nextField() {
                    switch (f, w) {
                    case (1, .lengthDelimited): normalizerName = try r.string()
                    case (2, .lengthDelimited): hasPrecompiledCharsmap = try !r.field().isEmpty
                    case (3, .varint): addDummyPrefix = try r.varint() != 0
                    case (4, .varint): removeExtraWhitespaces = try r.varint() != 0
                    case (5, .varint): escapeWhitespaces = try r.varint() != 0
                    default: try r.skip(w)
                    }
                }
            default:
                try top.skip(wire)
            }
        }
        guard !pieces.isEmpty else { throw top.error("it holds no pieces (not a SentencePiece model?)") }
    }
}

/// Protocol-buffer wire format over a byte array; every read is bounds-checked and throws
/// ``TokenizerError/invalidValue(source:key:reason:)`` naming the file and byte offset.
struct ProtoReader {
    enum Wire: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    private let buffer: [UInt8]
    private var offset: Int
    private let end: Int
    let path: String

    init(bytes: [UInt8], path: String) {
        self.buffer = bytes
        self.offset = 0
        self.end = bytes.count
        self.path = path
    }

    private init(bytes: [UInt8], offset: Int, end: Int, path: String) {
        self.buffer = bytes
        self.offset = offset
        self.end = end
        self.path = path
    }

    func error(_ reason: String) -> TokenizerError {
        .invalidValue(source: path, key: "(protobuf at byte \(offset))", reason: reason)
    }

    /// The next field's number and wire type, or nil at the end of this message.
    mutating func nextField() throws -> (Int, Wire)? {
        guard offset < end else { return nil }
        let key = try varint()
        guard let wire = Wire(rawValue: key & 7) else { throw error("unknown wire type \(key & 7)") }
        let field = key >> 3
        guard field > 0, field < 1 << 29 else { throw error("field number \(field) out of range") }
        return (Int(field), wire)
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw error("truncated varint") }
            let b = buffer[offset]
            offset += 1
            guard shift < 64 else { throw error("varint longer than 10 bytes") }
            value |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// An int32 field (negative values are sign-extended to 10 bytes on the wire).
    mutating func int32() throws -> Int { Int(Int32(truncatingIfNeeded: Int64(bitPattern: try varint()))) }

    mutating func fixed32() throws -> UInt32 {
        guard end - offset >= 4 else { throw error("truncated fixed32") }
        let v = UInt32(buffer[offset]) | UInt32(buffer[offset + 1]) << 8 | UInt32(buffer[offset + 2]) << 16 | UInt32(buffer[offset + 3]) << 24
        offset += 4
        return v
    }

    private mutating func length() throws -> Int {
        let n = try varint()
        guard n <= UInt64(end - offset) else { throw error("length \(n) runs past the end (\(end - offset) bytes left)") }
        return Int(n)
    }

    mutating func field() throws -> ArraySlice<UInt8> {
        let n = try length()
        defer { offset += n }
        return buffer[offset..<(offset + n)]
    }

    mutating func string() throws -> String {
        let start = offset
        let raw = try field()
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw TokenizerError.invalidValue(source: path, key: "(protobuf at byte \(start))", reason: "string is not valid UTF-8")
        }
        return s
    }

    /// A reader over the embedded message that starts here; this reader moves past it.
    mutating func message() throws -> ProtoReader {
        let n = try length()
        defer { offset += n }
        return ProtoReader(bytes: buffer, offset: offset, end: offset + n, path: path)
    }

    mutating func skip(_ wire: Wire) throws {
        switch wire {
        case .varint: _ = try varint()
        case .fixed64:
            guard end - offset >= 8 else { throw error("truncated fixed64") }
            offset += 8
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try field()
        case .startGroup, .endGroup: throw error("groups are not used by SentencePiece models")
        }
    }
}
