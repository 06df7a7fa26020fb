import Foundation

extension Tokenizer {
    /// Loads a Hugging Face model directory's tokenizer: `tokenizer.json`, or — when a
    /// directory ships only SentencePiece's `tokenizer.model` — the tokenizer transformers
    /// converts from it (``SentencePieceConversion``). `tokenizer_config.json` (BOS/EOS names,
    /// `add_bos_token`/`add_eos_token`, `legacy`, added tokens, `chat_template`),
    /// `special_tokens_map.json`, `added_tokens.json`, `chat_template.jinja` and
    /// `generation_config.json` (extra EOS ids) are read when present.
    public convenience init(huggingFaceDirectory dir: String) throws {
        var files: [String: Data] = [:]
        for name in Tokenizer.huggingFaceFiles {
            if let data = FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent(name)) { files[name] = data }
        }
        try self.init(huggingFaceFiles: files, source: dir)
    }

    /// The files of a Hugging Face directory the tokenizer reads: tokenizer.json or
    /// tokenizer.model is required, the rest optional.
    public static let huggingFaceFiles = [
        "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "chat_template.jinja", "generation_config.json",
    ]

    /// Files among ``huggingFaceFiles`` that are binary (a `.moe` store embeds them as bytes).
    public static let binaryHuggingFaceFiles: Set<String> = ["tokenizer.model"]

    /// Loads from the contents of a Hugging Face directory's tokenizer files (name → bytes),
    /// e.g. as a `.moe` store embeds them. `source` names them in errors.
    public convenience init(huggingFaceFiles files: [String: Data], source dir: String) throws {
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        let rawConfig = try Self.parseJSON(files["tokenizer_config.json"], path("tokenizer_config.json"), required: false) ?? [:]
        let specialMap = try Self.parseJSON(files["special_tokens_map.json"], path("special_tokens_map.json"), required: false)
        var (config, notes) = SentencePieceConversion.mergedConfig(rawConfig, specialTokensMap: specialMap)
        let root: [String: Any]
        let origin: String
        let readerPath: String
        if let json = try Self.parseJSON(files["tokenizer.json"], path("tokenizer.json"), required: false) {
            root = json
            origin = "tokenizer.json"
            readerPath = path("tokenizer.json")
            if let model = files["tokenizer.model"], let note = Self.disagreement(json: json, sentencePiece: model, path: path("tokenizer.model")) {
                notes.append(note)
            }
        } else if let model = files["tokenizer.model"] {
            let added = try Self.parseJSON(files["added_tokens.json"], path("added_tokens.json"), required: false)
            root = try SentencePieceConversion.tokenizerJSON(model: model, config: config, specialTokensMap: specialMap,
                                                             addedTokens: added, path: path("tokenizer.model"))
            origin = "tokenizer.model (no tokenizer.json: converted as transformers does, legacy \(config["legacy"] as? Bool ?? true))"
            readerPath = path("tokenizer.model")
        } else {
            throw TokenizerError.cannotRead(path: path("tokenizer.json"), reason: "file missing or unreadable, and there is no tokenizer.model either")
        }
        let reader = HFTokenizerReader(path: readerPath)
        var parts = try reader.parts(root)
        try reader.apply(config: config, to: &parts)
        parts.origin = origin
        parts.notes = notes

        if parts.chatTemplate == nil, let data = files["chat_template.jinja"] {
            parts.chatTemplate = String(decoding: data, as: UTF8.self)
        }
        if let gen = try? Self.parseJSON(files["generation_config.json"], path("generation_config.json"), required: false) {
            let values: [Any] = (gen["eos_token_id"] as? [Any]) ?? [gen["eos_token_id"] as Any]
            parts.extraEOS += values.compactMap { ($0 as? NSNumber)?.intValue }.filter { $0 >= 0 && $0 < parts.tokens.count }
        }
        self.init(parts)
    }

    /// When a directory has both files, what transformers uses (tokenizer.json) and how the
    /// SentencePiece model differs from it, or nil when their vocabularies agree.
    static func disagreement(json: [String: Any], sentencePiece data: Data, path: String) -> String? {
        guard let proto = try? SentencePieceModelFile(data: data, path: path) else {
            return "tokenizer.model is unreadable; used tokenizer.json"
        }
        guard let vocab = (json["model"] as? [String: Any])?["vocab"] as? [String: Any] else { return nil }
        var byId: [Int: String] = [:]
        for (text, id) in vocab { if let i = (id as? NSNumber)?.intValue { byId[i] = text } }
        // Ids 0-2 are renamed by transformers' Llama conversion; compare the rest.
        let differing = proto.pieces.indices.filter { $0 >= 3 && byId[$0] != proto.pieces[$0].text }
        let missing = byId.count < proto.pieces.count ? proto.pieces.count - byId.count : 0
        guard !differing.isEmpty || missing > 0 else { return nil }
        var note = "tokenizer.json and tokenizer.model disagree"
        if let first = differing.first {
            note += " on \(differing.count) of \(proto.pieces.count) pieces (first: id \(first) is \(byId[first].map(quoted) ?? "absent") in tokenizer.json, \(quoted(proto.pieces[first].text)) in tokenizer.model)"
        } else {
            note += ": tokenizer.json lacks \(missing) of tokenizer.model's \(proto.pieces.count) pieces"
        }
        return note + "; used tokenizer.json, as transformers does"
    }

    static func parseJSON(_ data: Data?, _ path: String, required: Bool) throws -> [String: Any]? {
        guard let data else {
            if required { throw TokenizerError.cannotRead(path: path, reason: "file missing or unreadable") }
            return nil
        }
        do {
            guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.invalidValue(source: path, key: "(top level)", reason: "not a JSON object")
            }
            return obj
        } catch let e as TokenizerError {
            throw e
        } catch {
            throw TokenizerError.invalidValue(source: path, key: "(file)", reason: "not valid JSON: \(error.localizedDescription)")
        }
    }

}

/// Reads the parts of a `tokenizer.json` this implementation supports; anything else is an
/// `unsupported` error naming the JSON path.
struct HFTokenizerReader {
    let path: String
    /// Ids missing below the largest accepted beyond twice the token count.
    static let maxIdGap = 4096

    func invalid(_ key: String, _ reason: String) -> TokenizerError { .invalidValue(source: path, key: key, reason: reason) }
    func unsupported(_ what: String) -> TokenizerError { .unsupported(source: path, feature: what) }

    func parts(_ root: [String: Any]) throws -> Tokenizer.Parts {
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.missingKey(source: path, key: "model") }
        let type = model["type"] as? String ?? (model["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else {
            throw unsupported("model.type \(quoted(type)) (this build reads BPE models: byte-level and SentencePiece-converted)")
        }
        guard let vocabObj = model["vocab"] as? [String: Any] else { throw TokenizerError.missingKey(source: path, key: "model.vocab") }
        var byId: [Int: String] = [:]
        for (text, value) in vocabObj {
            guard let id = (value as? NSNumber)?.intValue, id >= 0, id < 16_777_216 else {
                throw invalid("model.vocab", "token \(quoted(text)) has no valid id")
            }
            byId[id] = text
        }
        var added: [Tokenizer.AddedToken] = []
        for (i, item) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let t = item as? [String: Any], let id = (t["id"] as? NSNumber)?.intValue, id >= 0, id < 16_777_216,
                  let content = t["content"] as? String else {
                throw invalid("added_tokens[\(i)]", "needs an id and a content")
            }
            byId[id] = content
            added.append(.init(bytes: Array(content.utf8), id: Int32(id), special: t["special"] as? Bool ?? false,
                               leftStrip: t["lstrip"] as? Bool ?? false, rightStrip: t["rstrip"] as? Bool ?? false))
        }
        let count = (byId.keys.max() ?? -1) + 1
        guard count > 0 else { throw invalid("model.vocab", "the vocabulary is empty") }
        // Ids index a dense table: a few damaged ids must not make a small file allocate and
        // build millions of empty tokens (fuzzing found a 7 KB file taking seconds). Real
        // vocabularies have at most small gaps.
        guard count <= 2 * byId.count + Self.maxIdGap else {
            throw invalid("model.vocab", "ids reach \(count - 1) but there are only \(byId.count) tokens; the ids are damaged")
        }
        var tokens = [String](repeating: "", count: count)
        for (id, text) in byId { tokens[id] = text }
        let idOf = Dictionary(byId.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })

        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key] as? String, !v.isEmpty { throw unsupported("model.\(key) \(quoted(v))") }
        }
        if let dropout = model["dropout"] as? NSNumber, dropout.doubleValue > 0 { throw unsupported("BPE dropout") }
        var merges: [(String, String)] = []
        for (i, m) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            if let line = m as? String, let pair = Tokenizer.splitMerge(line) {
                merges.append(pair)
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw invalid("model.merges[\(i)]", "expected \"left right\" or [left, right]")
            }
        }

        let normalizers = try normalizer(root["normalizer"], key: "normalizer")
        var byteLevel = false
        let steps = try preTokenizer(root["pre_tokenizer"], key: "pre_tokenizer", byteLevel: &byteLevel)
        let decoding = try decoder(root["decoder"], key: "decoder", byteLevel: &byteLevel)
        let unknown = (model["unk_token"] as? String).flatMap { idOf[$0] }
        let bpe = BytePairModel(vocabulary: tokens, mergeList: merges, byteLevel: byteLevel,
                                byteFallback: model["byte_fallback"] as? Bool ?? false,
                                ignoreMerges: model["ignore_merges"] as? Bool ?? false,
                                unknownId: unknown, fuseUnknown: model["fuse_unk"] as? Bool ?? false)
        let (prefix, suffix) = try postProcessor(root["post_processor"], key: "post_processor", idOf: idOf)
        return Tokenizer.Parts(
            source: path, tokens: tokens, model: .bytePair(bpe),
            pipeline: .huggingFace(normalizers: normalizers, preTokenizers: steps),
            decoding: decoding, addedTokens: added, bos: nil, eos: nil, unknown: unknown, padding: nil,
            prefix: prefix, suffix: suffix, chatTemplate: nil)
    }

    /// Special-token names and flags from tokenizer_config.json.
    func apply(config: [String: Any], to parts: inout Tokenizer.Parts) throws {
        var idOf: [String: Int] = [:]
        for (i, t) in parts.tokens.enumerated() where idOf[t] == nil { idOf[t] = i }
        func tokenName(_ key: String) -> String? {
            if let s = config[key] as? String { return s }
            return (config[key] as? [String: Any])?["content"] as? String
        }
        func id(_ key: String) -> Int? { tokenName(key).flatMap { idOf[$0] } }
        parts.bos = id("bos_token")
        parts.eos = id("eos_token")
        parts.padding = id("pad_token")
        parts.unknown = id("unk_token") ?? parts.unknown
        // transformers' Llama/GPT-NeoX tokenizers rebuild the post-processor from these flags.
        if let addBOS = config["add_bos_token"] as? Bool {
            parts.prefix = addBOS ? [parts.bos].compactMap { $0 } : parts.prefix.filter { $0 != parts.bos }
        }
        if let addEOS = config["add_eos_token"] as? Bool {
            parts.suffix = addEOS ? [parts.eos].compactMap { $0 } : parts.suffix.filter { $0 != parts.eos }
        }
        if let template = config["chat_template"] as? String {
            parts.chatTemplate = template
        } else if let named = config["chat_template"] as? [[String: Any]] {
            let pick = named.first { $0["name"] as? String == "default" } ?? named.first
            parts.chatTemplate = pick?["template"] as? String
        }
    }

    private func patternString(_ obj: Any?, key: String) throws -> (String, isRegex: Bool) {
        guard let p = obj as? [String: Any] else { throw invalid(key, "missing pattern") }
        if let s = p["String"] as? String { return (s, false) }
        if let r = p["Regex"] as? String { return (r, true) }
        throw invalid(key, "pattern is neither String nor Regex")
    }

    func normalizer(_ obj: Any?, key: String) throws -> [Normalizer] {
        guard let n = obj as? [String: Any] else { return [] }
        let type = n["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            let list = n["normalizers"] as? [Any] ?? []
            return try list.enumerated().flatMap { try normalizer($1, key: "\(key).normalizers[\($0)]") }
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Lowercase": return [.lowercase]
        case "Prepend":
            guard let p = n["prepend"] as? String else { throw invalid(key, "Prepend without prepend") }
            return [.prepend(p)]
        case "Replace":
            let (pattern, isRegex) = try patternString(n["pattern"], key: key + ".pattern")
            guard !isRegex else { throw unsupported("\(key): Replace with a regex pattern") }
            return [.replace(pattern, with: n["content"] as? String ?? "")]
        default:
            throw unsupported("\(key).type \(quoted(type))")
        }
    }

    func preTokenizer(_ obj: Any?, key: String, byteLevel: inout Bool) throws -> [PreTokenizerStep] {
        guard let p = obj as? [String: Any] else { return [] }
        let type = p["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            var steps: [PreTokenizerStep] = []
            for (i, item) in (p["pretokenizers"] as? [Any] ?? []).enumerated() {
                steps += try preTokenizer(item, key: "\(key).pretokenizers[\(i)]", byteLevel: &byteLevel)
            }
            return steps
        case "Split":
            let (pattern, isRegex) = try patternString(p["pattern"], key: key + ".pattern")
            if p["invert"] as? Bool == true { throw unsupported("\(key): Split with invert") }
            let name = p["behavior"] as? String ?? "Isolated"
            guard let behavior = PreTokenizerStep.Behavior(rawValue: name) else { throw unsupported("\(key): Split behavior \(quoted(name))") }
            return [.split(isRegex ? try SplitPattern(regex: pattern, origin: path) : SplitPattern(literal: pattern), behavior)]
        case "ByteLevel":
            byteLevel = true
            let useRegex = p["use_regex"] as? Bool ?? true
            return [.byteLevel(addPrefixSpace: p["add_prefix_space"] as? Bool ?? false,
                               regex: useRegex ? try SplitPattern(regex: PreTokenizerTable.gpt2, origin: path) : nil)]
        case "Metaspace":
            let replacement = p["replacement"] as? String ?? "\u{2581}"
            let scheme: PreTokenizerStep.PrependScheme
            if let s = p["prepend_scheme"] as? String {
                guard let v = PreTokenizerStep.PrependScheme(rawValue: s) else { throw unsupported("\(key): prepend_scheme \(quoted(s))") }
                scheme = v
            } else {
                scheme = (p["add_prefix_space"] as? Bool ?? true) ? .always : .never
            }
            return [.metaspace(replacement: replacement, prependScheme: scheme, split: p["split"] as? Bool ?? true)]
        case "Digits":
            return [.digits(individual: p["individual_digits"] as? Bool ?? false)]
        default:
            throw unsupported("\(key).type \(quoted(type))")
        }
    }

    func decoder(_ obj: Any?, key: String, byteLevel: inout Bool) throws -> Tokenizer.Decoding {
        guard let d = obj as? [String: Any] else { return byteLevel ? .byteLevel : .plain }
        let type = d["type"] as? String ?? "?"
        switch type {
        case "ByteLevel":
            byteLevel = true
            return .byteLevel
        case "Metaspace":
            let scheme = d["prepend_scheme"] as? String ?? ((d["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            return .sentencePiece(stripLeadingSpace: scheme != "never")
        case "Sequence":
            // The SentencePiece chain: Replace ▁→" ", ByteFallback, Fuse, optional Strip(" ", 1, 0).
            var strip = false
            for (i, item) in (d["decoders"] as? [Any] ?? []).enumerated() {
                guard let s = item as? [String: Any] else { continue }
                let k = "\(key).decoders[\(i)]"
                switch s["type"] as? String ?? "?" {
                case "Replace":
                    let (pattern, _) = try patternString(s["pattern"], key: k + ".pattern")
                    guard pattern == "\u{2581}", s["content"] as? String == " " else { throw unsupported("\(k): Replace other than ▁ → space") }
                case "ByteFallback", "Fuse":
                    break
                case "Strip":
                    guard s["content"] as? String == " ", (s["stop"] as? NSNumber)?.intValue ?? 0 == 0,
                          (s["start"] as? NSNumber)?.intValue ?? 0 <= 1 else { throw unsupported("\(k): Strip other than one leading space") }
                    strip = (s["start"] as? NSNumber)?.intValue == 1
                case "Metaspace":
                    strip = (s["prepend_scheme"] as? String ?? "always") != "never"
                case "ByteLevel":
                    byteLevel = true
                    return .byteLevel
                case let other:
                    throw unsupported("\(k).type \(quoted(other))")
                }
            }
            return .sentencePiece(stripLeadingSpace: strip)
        default:
            throw unsupported("\(key).type \(quoted(type))")
        }
    }

    /// BOS/EOS ids around a single sequence, from `TemplateProcessing` (possibly inside a Sequence).
    func postProcessor(_ obj: Any?, key: String, idOf: [String: Int]) throws -> ([Int], [Int]) {
        guard let p = obj as? [String: Any] else { return ([], []) }
        switch p["type"] as? String ?? "?" {
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            var result: ([Int], [Int]) = ([], [])
            for (i, item) in (p["processors"] as? [Any] ?? []).enumerated() {
                let r = try postProcessor(item, key: "\(key).processors[\(i)]", idOf: idOf)
                if !r.0.isEmpty || !r.1.isEmpty { result = r }
            }
            return result
        case "TemplateProcessing":
            let specials = p["special_tokens"] as? [String: Any] ?? [:]
            var prefix: [Int] = [], suffix: [Int] = []
            var seenSequence = false
            for (i, item) in (p["single"] as? [Any] ?? []).enumerated() {
                guard let entry = item as? [String: Any] else { continue }
                if entry["Sequence"] != nil { seenSequence = true; continue }
                guard let name = (entry["SpecialToken"] as? [String: Any])?["id"] as? String else {
                    throw invalid("\(key).single[\(i)]", "neither Sequence nor SpecialToken")
                }
                let ids = ((specials[name] as? [String: Any])?["ids"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue }
                    ?? idOf[name].map { [$0] } ?? []
                guard !ids.isEmpty, ids.allSatisfy({ $0 >= 0 && $0 < 16_777_216 }) else {
                    throw invalid("\(key).single[\(i)]", "special token \(quoted(name)) has no id")
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case let other:
            throw unsupported("\(key).type \(quoted(other))")
        }
    }
}
