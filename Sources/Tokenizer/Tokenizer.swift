import Foundation
import ModelFormats

/// Text ↔ token ids for the model families SwiftMoE runs, loaded from GGUF metadata
/// (`tokenizer.ggml.*`) or a Hugging Face `tokenizer.json` directory.
///
/// ```swift
/// let tokenizer = try Tokenizer(gguf: GGUFFile(path: "qwen3.gguf"))
/// let ids = tokenizer.encode("Hello <|im_end|>")        // BOS as the file says, specials parsed
/// let text = tokenizer.decode(ids)
/// var stream = tokenizer.streamingDecoder()
/// for id in generated { print(stream.append(id), terminator: "") }
/// ```
///
/// ### Pipeline
/// `encode` follows Hugging Face `tokenizers`: added/special tokens are cut out of the raw
/// text first; each remaining piece is normalized, pre-tokenized (regex splits, byte-level
/// mapping, Metaspace) and encoded word by word by the model (rank-based BPE). GGUF
/// SentencePiece vocabularies (`llama`) use llama.cpp's score-based SPM merges instead.
/// See docs/tokenizer.md for what is supported and where llama.cpp and transformers differ.
///
/// A `Tokenizer` is immutable after loading and safe to share between threads.
public final class Tokenizer: Sendable {
    enum Model {
        case bytePair(BytePairModel)
        case sentencePiece(SentencePieceModel)
    }

    /// What happens to text between added tokens before the model sees it.
    enum TextPipeline {
        case huggingFace(normalizers: [Normalizer], preTokenizers: [PreTokenizerStep])
        /// llama.cpp SPM: spaces become `▁`, plus a leading `▁` when `addSpacePrefix`.
        case sentencePiece(addSpacePrefix: Bool)
    }

    /// How a token id turns back into bytes.
    enum Decoding {
        /// GPT-2 byte-level characters → bytes.
        case byteLevel
        /// `▁` → space, `<0xNN>` → byte; optionally drop one leading space of the output.
        case sentencePiece(stripLeadingSpace: Bool)
        /// Token text as is.
        case plain
    }

    struct AddedToken {
        let bytes: [UInt8]
        let id: Int32
        /// Control tokens are recognized only when `parseSpecial` is true; user-defined ones always.
        let special: Bool
        let leftStrip: Bool
        let rightStrip: Bool
    }

    /// Everything a loader determines; `Tokenizer.init(_:)` derives the lookup tables.
    struct Parts {
        var source: String
        var tokens: [String]
        var model: Model
        var pipeline: TextPipeline
        var decoding: Decoding
        var addedTokens: [AddedToken]
        var bos: Int?
        var eos: Int?
        var extraEOS: [Int] = []
        var unknown: Int?
        var padding: Int?
        var prefix: [Int]
        var suffix: [Int]
        var chatTemplate: String?
        /// Which file the tokenizer came from, for `moe inspect`.
        var origin = ""
        /// Disagreements between the directory's files and which one was used.
        var notes: [String] = []
    }

    /// Where the tokenizer was loaded from (a GGUF path or a directory).
    public let source: String
    /// Which file of `source` defined it: `tokenizer.json`, `tokenizer.model (…)`, or GGUF metadata.
    public let origin: String
    /// Where the files of `source` disagree, which one was used (empty when they agree).
    public let notes: [String]
    /// Token text as stored in the vocabulary (byte-level characters such as `Ġ`, or `▁`).
    public let tokens: [String]
    public let bosTokenId: Int?
    /// The end-of-sequence token (`eos_token_id`).
    public let eosTokenId: Int?
    /// Tokens that end generation: EOS plus end-of-turn tokens the file names.
    public let eosTokenIds: Set<Int>
    public let unknownTokenId: Int?
    public let paddingTokenId: Int?
    /// Ids `encode(_:addSpecialTokens: true)` puts before and after the text (BOS/EOS per file).
    public let prefixTokenIds: [Int]
    public let suffixTokenIds: [Int]
    /// The Jinja chat template the file ships, if any (not rendered here).
    public let chatTemplate: String?
    /// Added tokens marked special (control tokens), skipped by `decode(_:skipSpecialTokens: true)`.
    public let specialTokenIds: Set<Int>

    let model: Model
    let pipeline: TextPipeline
    let decoding: Decoding
    /// Decoded bytes of each token.
    let tokenBytes: [[UInt8]]
    /// Added tokens by first byte, longest first.
    let addedByFirstByte: [[AddedToken]]

    public var vocabularySize: Int { tokens.count }

    init(_ p: Parts) {
        source = p.source
        origin = p.origin
        notes = p.notes
        tokens = p.tokens
        model = p.model
        pipeline = p.pipeline
        decoding = p.decoding
        bosTokenId = p.bos
        eosTokenId = p.eos
        eosTokenIds = Set(([p.eos].compactMap { $0 }) + p.extraEOS)
        unknownTokenId = p.unknown
        paddingTokenId = p.padding
        prefixTokenIds = p.prefix
        suffixTokenIds = p.suffix
        chatTemplate = p.chatTemplate
        specialTokenIds = Set(p.addedTokens.filter(\.special).map { Int($0.id) })

        var buckets = [[AddedToken]](repeating: [], count: 256)
        for t in p.addedTokens where !t.bytes.isEmpty { buckets[Int(t.bytes[0])].append(t) }
        addedByFirstByte = buckets.map { $0.sorted { $0.bytes.count > $1.bytes.count } }

        tokenBytes = p.tokens.enumerated().map { id, text in
            switch p.decoding {
            case .plain:
                return Array(text.utf8)
            case .byteLevel:
                return ByteLevel.decode(text) ?? Array(text.utf8)
            case .sentencePiece:
                if let b = Self.byteTokenValue(text) { return [b] }
                return Array(text.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
            }
        }
    }

    /// `<0xNN>` → NN.
    static func byteTokenValue(_ text: String) -> UInt8? {
        let u = Array(text.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    // MARK: - Encoding

    /// Token ids of `text`.
    ///
    /// - Parameters:
    ///   - addSpecialTokens: add BOS/EOS as the file says (`prefixTokenIds`, `suffixTokenIds`).
    ///   - parseSpecial: recognize control tokens such as `<|im_end|>` written in the text;
    ///     when false they are tokenized as ordinary text (user-defined added tokens are
    ///     always recognized, as in transformers and llama.cpp).
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecial: Bool = true) -> [Int] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { out.append(contentsOf: prefixTokenIds.map(Int32.init)) }
        let bytes = Array(text.utf8)
        var cache: [[UInt8]: [Int32]] = [:]
        var textStart = 0
        var i = 0
        var skipWhitespaceFrom: Int? = nil
        while i < bytes.count {
            if let from = skipWhitespaceFrom, from == i, Self.isASCIIWhitespace(bytes[i]) {
                i += 1; textStart = i; skipWhitespaceFrom = i
                continue
            }
            guard let hit = addedToken(at: i, in: bytes, parseSpecial: parseSpecial) else { i += 1; continue }
            var textEnd = i
            if hit.leftStrip { while textEnd > textStart && Self.isASCIIWhitespace(bytes[textEnd - 1]) { textEnd -= 1 } }
            if textEnd > textStart { encodeText(bytes[textStart..<textEnd], atStart: textStart == 0, into: &out, cache: &cache) }
            out.append(hit.id)
            i += hit.bytes.count
            textStart = i
            skipWhitespaceFrom = hit.rightStrip ? i : nil
        }
        if textStart < bytes.count { encodeText(bytes[textStart...], atStart: textStart == 0, into: &out, cache: &cache) }
        if addSpecialTokens { out.append(contentsOf: suffixTokenIds.map(Int32.init)) }
        return out.map(Int.init)
    }

    private static func isASCIIWhitespace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }

    private func addedToken(at i: Int, in bytes: [UInt8], parseSpecial: Bool) -> AddedToken? {
        for t in addedByFirstByte[Int(bytes[i])] where parseSpecial || !t.special {
            let n = t.bytes.count
            guard i + n <= bytes.count else { continue }
            var k = 1
            while k < n && bytes[i + k] == t.bytes[k] { k += 1 }
            if k == n { return t }
        }
        return nil
    }

    private func encodeText(_ bytes: ArraySlice<UInt8>, atStart: Bool, into out: inout [Int32], cache: inout [[UInt8]: [Int32]]) {
        switch (pipeline, model) {
        case let (.sentencePiece(addSpacePrefix), .sentencePiece(spm)):
            var text: [UInt8] = []
            text.reserveCapacity(bytes.count + 8)
            if addSpacePrefix { text.append(contentsOf: [0xE2, 0x96, 0x81]) }
            for b in bytes { if b == 0x20 { text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { text.append(b) } }
            spm.encode(text, into: &out)
        case let (.huggingFace(normalizers, preTokenizers), .bytePair(bpe)):
            var s = String(decoding: bytes, as: UTF8.self)
            for n in normalizers { s = n.apply(s) }
            if s.isEmpty { return }
            var pieces = [Substring(s)]
            for step in preTokenizers { pieces = step.apply(pieces, atStart: atStart) }
            for piece in pieces {
                let word = Array(piece.utf8)
                if let hit = cache[word] { out.append(contentsOf: hit); continue }
                let before = out.count
                bpe.encode(word: word[...], into: &out)
                if word.count < 256 { cache[word] = Array(out[before...]) }
            }
        case (.huggingFace, .sentencePiece), (.sentencePiece, .bytePair):
            assertionFailure("loaders pair SentencePiece text with the SPM model and HF pipelines with BPE")
        }
    }

    // MARK: - Decoding

    /// The text of `ids`. Ids outside the vocabulary are skipped; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        var atStart = true
        for id in ids { appendBytes(of: id, to: &bytes, atStart: &atStart, skipSpecialTokens: skipSpecialTokens) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The text one token stands for on its own (decoded, without stripping a leading space).
    public func piece(_ id: Int) -> String {
        guard id >= 0 && id < tokenBytes.count else { return "" }
        return String(decoding: tokenBytes[id], as: UTF8.self)
    }

    /// The bytes one token decodes to (part of a character for byte-level and byte-fallback tokens).
    public func pieceBytes(_ id: Int) -> [UInt8] {
        guard id >= 0 && id < tokenBytes.count else { return [] }
        return tokenBytes[id]
    }

    /// A readable form of a token for listings: its text quoted with escapes, or its bytes as
    /// `<0xE4><0xBD>` when they are not complete UTF-8 on their own.
    public func pieceDescription(_ id: Int) -> String {
        let bytes = pieceBytes(id)
        let s = String(decoding: bytes, as: UTF8.self)
        if Array(s.utf8) == bytes { return s.debugDescription }
        return bytes.map { BytePairModel.byteTokenName($0) }.joined()
    }

    /// A decoder for generated tokens that returns text as soon as it is complete UTF-8.
    public func streamingDecoder(skipSpecialTokens: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    func appendBytes(of id: Int, to bytes: inout [UInt8], atStart: inout Bool, skipSpecialTokens: Bool) {
        guard id >= 0 && id < tokenBytes.count else { return }
        if skipSpecialTokens && specialTokenIds.contains(id) { return }
        let t = tokenBytes[id]
        if t.isEmpty { return }
        if atStart {
            atStart = false
            if case .sentencePiece(true) = decoding, t[0] == 0x20 {
                bytes.append(contentsOf: t.dropFirst())
                return
            }
        }
        bytes.append(contentsOf: t)
    }
}

/// Turns generated token ids into text incrementally. `append` returns only complete UTF-8:
/// the bytes of a character split across tokens (emoji, CJK through byte fallback or
/// byte-level BPE) are held back until the character is complete, so the concatenation of
/// everything returned equals `tokenizer.decode(ids)` and valid output never shows U+FFFD.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var atStart = true

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one token; returns the text that became complete (possibly empty).
    public mutating func append(_ id: Int) -> String {
        tokenizer.appendBytes(of: id, to: &pending, atStart: &atStart, skipSpecialTokens: skipSpecialTokens)
        let cut = Self.completePrefixLength(pending)
        if cut == 0 { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Returns whatever is held back (an unfinished character becomes U+FFFD) and resets.
    public mutating func finish() -> String {
        defer { pending = []; atStart = true }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence that may
    /// still be completed by later bytes.
    static func completePrefixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        // find the last lead byte among the final 3 bytes
        var i = n - 1
        while i >= 0 && i >= n - 3 {
            let c = b[i]
            if c & 0xC0 == 0x80 { i -= 1; continue }  // continuation byte
            let need = utf8Length(c)
            return (c >= 0xC2 && need > n - i) ? i : n
        }
        return n
    }
}

extension Tokenizer {
    /// Opens the tokenizer of a model: a GGUF file's metadata or a Hugging Face directory's
    /// tokenizer.json.
    public convenience init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.cannotRead(path: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            try self.init(huggingFaceDirectory: path)
        } else if let store = try? MoEStoreFile(file: MappedFile(path: path, randomAccess: true)) {
            // Random access: only the tokenizer's pages are read, so a run under --memory does
            // not pull megabytes of read-ahead (expert bytes) into the page cache.
            try self.init(store: store)
        } else {
            try self.init(gguf: GGUFFile(file: MappedFile(path: path, randomAccess: true)))
        }
    }

    /// The key prefix under which a `.moe` store embeds a Hugging Face directory's tokenizer files.
    public static let embeddedFilePrefix = "tokenizer.huggingface.file."

    /// Opens the tokenizer a `.moe` store embeds (GGUF tokenizer metadata or Hugging Face files).
    public convenience init(store: MoEStoreFile) throws {
        guard let gguf = try store.tokenizerGGUF() else {
            throw TokenizerError.cannotRead(path: store.path, reason: "the store has no tokenizer")
        }
        if gguf.metadata["tokenizer.ggml.model"] != nil {
            try self.init(gguf: gguf)
            return
        }
        var files: [String: Data] = [:]
        for (key, value) in gguf.metadata where key.hasPrefix(Tokenizer.embeddedFilePrefix) {
            let name = String(key.dropFirst(Tokenizer.embeddedFilePrefix.count))
            if let text = value.string {
                files[name] = Data(text.utf8)
            } else if case let .array(.uint8, bytes) = value {
                // Binary files (tokenizer.model) are embedded as a uint8 array.
                files[name] = Data(bytes.compactMap { if case let .uint8(b) = $0 { return b } else { return nil } })
            }
        }
        try self.init(huggingFaceFiles: files, source: store.path)
    }
}
