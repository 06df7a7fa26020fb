import ModelFormats

/// GGUF metadata keys of the tokenizer (llama.cpp `LLM_KV_TOKENIZER_*`), in one place.
enum GGUFTokenizerKey {
    static let model = "tokenizer.ggml.model"
    static let pre = "tokenizer.ggml.pre"
    static let tokens = "tokenizer.ggml.tokens"
    static let scores = "tokenizer.ggml.scores"
    static let tokenType = "tokenizer.ggml.token_type"
    static let merges = "tokenizer.ggml.merges"
    static let bos = "tokenizer.ggml.bos_token_id"
    static let eos = "tokenizer.ggml.eos_token_id"
    static let eot = "tokenizer.ggml.eot_token_id"
    static let eom = "tokenizer.ggml.eom_token_id"
    static let unknown = "tokenizer.ggml.unknown_token_id"
    static let padding = "tokenizer.ggml.padding_token_id"
    static let addBOS = "tokenizer.ggml.add_bos_token"
    static let addEOS = "tokenizer.ggml.add_eos_token"
    static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
    static let chatTemplate = "tokenizer.chat_template"
}

/// llama.cpp's `llama_token_type` values in `tokenizer.ggml.token_type`.
enum GGUFTokenType: Int {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

extension Tokenizer {
    /// Loads the tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.model` `llama`
    /// or `gpt2`).
    public convenience init(gguf file: GGUFFile) throws {
        let src = file.path
        let meta = file.metadata
        typealias K = GGUFTokenizerKey
        guard let modelName = meta[K.model]?.string else { throw TokenizerError.missingKey(source: src, key: K.model) }
        guard let tokenValues = meta[K.tokens]?.array else { throw TokenizerError.missingKey(source: src, key: K.tokens) }
        var tokens: [String] = []
        tokens.reserveCapacity(tokenValues.count)
        for (i, v) in tokenValues.enumerated() {
            guard let s = v.string else { throw TokenizerError.invalidValue(source: src, key: K.tokens, reason: "element \(i) is not a string") }
            tokens.append(s)
        }
        let n = tokens.count
        guard n > 0 else { throw TokenizerError.invalidValue(source: src, key: K.tokens, reason: "the vocabulary is empty") }

        var types = [GGUFTokenType](repeating: .normal, count: n)
        if let values = meta[K.tokenType]?.array {
            guard values.count == n else {
                throw TokenizerError.invalidValue(source: src, key: K.tokenType, reason: "\(values.count) entries for \(n) tokens")
            }
            for (i, v) in values.enumerated() { types[i] = v.int.flatMap(GGUFTokenType.init(rawValue:)) ?? .normal }
        }
        // llama.cpp ignores special-token ids outside the vocabulary (with a warning); so do we.
        func tokenId(_ key: String) -> Int? {
            guard let id = meta[key]?.int, id >= 0, id < n else { return nil }
            return id
        }
        func flag(_ key: String) -> Bool? { meta[key]?.bool }

        let added: [AddedToken] = types.enumerated().compactMap { id, type in
            guard type == .control || type == .userDefined || type == .unknown, !tokens[id].isEmpty else { return nil }
            return AddedToken(bytes: Array(tokens[id].utf8), id: Int32(id), special: type != .userDefined, leftStrip: false, rightStrip: false)
        }

        var parts: Parts
        switch modelName {
        case "llama":
            guard let scoreValues = meta[K.scores]?.array else { throw TokenizerError.missingKey(source: src, key: K.scores) }
            guard scoreValues.count == n else {
                throw TokenizerError.invalidValue(source: src, key: K.scores, reason: "\(scoreValues.count) scores for \(n) tokens")
            }
            let scores = scoreValues.map { Float($0.double ?? 0) }
            let addSpacePrefix = flag(K.addSpacePrefix) ?? true
            // llama.cpp's SPM defaults: <unk> 0, <s> 1, </s> 2, BOS added, EOS not.
            let unknown = tokenId(K.unknown) ?? (n > 0 ? 0 : nil)
            let bos = tokenId(K.bos) ?? (n > 1 ? 1 : nil)
            let eos = tokenId(K.eos) ?? (n > 2 ? 2 : nil)
            parts = Parts(
                source: src, tokens: tokens,
                model: .sentencePiece(SentencePieceModel(tokens: tokens, scores: scores, unknownId: unknown)),
                pipeline: .sentencePiece(addSpacePrefix: addSpacePrefix),
                decoding: .sentencePiece(stripLeadingSpace: addSpacePrefix),
                addedTokens: added, bos: bos, eos: eos, unknown: unknown, padding: tokenId(K.padding),
                prefix: (flag(K.addBOS) ?? true) ? [bos].compactMap { $0 } : [],
                suffix: (flag(K.addEOS) ?? false) ? [eos].compactMap { $0 } : [],
                chatTemplate: meta[K.chatTemplate]?.string)
        case "gpt2":
            let preName = meta[K.pre]?.string ?? "default"
            guard let entry = PreTokenizerTable.entry(preName) else {
                throw TokenizerError.unsupported(
                    source: src, feature: "pre-tokenizer \(K.pre) = \(quoted(preName)) (this build knows \(PreTokenizerTable.knownNames.joined(separator: ", ")) and their aliases)")
            }
            guard let mergeValues = meta[K.merges]?.array else { throw TokenizerError.missingKey(source: src, key: K.merges) }
            var merges: [(String, String)] = []
            merges.reserveCapacity(mergeValues.count)
            for (i, v) in mergeValues.enumerated() {
                guard let line = v.string, let pair = Self.splitMerge(line) else {
                    throw TokenizerError.invalidValue(source: src, key: K.merges, reason: "entry \(i) is not \"left right\"")
                }
                merges.append(pair)
            }
            var steps: [PreTokenizerStep] = []
            for regex in entry.splits { steps.append(.split(try SplitPattern(regex: regex, origin: src), .isolated)) }
            let gpt2 = entry.splits.isEmpty ? try SplitPattern(regex: PreTokenizerTable.gpt2, origin: src) : nil
            steps.append(.byteLevel(addPrefixSpace: false, regex: gpt2))
            let unknown = tokenId(K.unknown)
            let bos = tokenId(K.bos), eos = tokenId(K.eos)
            parts = Parts(
                source: src, tokens: tokens,
                model: .bytePair(BytePairModel(vocabulary: tokens, mergeList: merges, byteLevel: true, byteFallback: false,
                                               ignoreMerges: entry.ignoreMerges, unknownId: unknown, fuseUnknown: false)),
                pipeline: .huggingFace(normalizers: entry.normalizers, preTokenizers: steps),
                decoding: .byteLevel,
                addedTokens: added, bos: bos, eos: eos, unknown: unknown, padding: tokenId(K.padding),
                prefix: (flag(K.addBOS) ?? entry.addBOS) ? [bos].compactMap { $0 } : [],
                suffix: (flag(K.addEOS) ?? false) ? [eos].compactMap { $0 } : [],
                chatTemplate: meta[K.chatTemplate]?.string)
        default:
            throw TokenizerError.unsupported(source: src, feature: "\(K.model) = \"\(modelName)\" (this build reads \"llama\" and \"gpt2\")")
        }
        parts.extraEOS = [tokenId(K.eot), tokenId(K.eom)].compactMap { $0 }
        parts.origin = "GGUF metadata (\(K.model) \(modelName))"
        self.init(parts)
    }

    /// `"left right"` → pair, split at the first space after the first character (llama.cpp).
    static func splitMerge(_ line: String) -> (String, String)? {
        let u = Array(line.utf8)
        guard u.count >= 3, let sp = u[1...].firstIndex(of: 0x20), sp + 1 < u.count else { return nil }
        return (String(decoding: u[..<sp], as: UTF8.self), String(decoding: u[(sp + 1)...], as: UTF8.self))
    }
}
