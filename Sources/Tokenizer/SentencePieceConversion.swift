import Foundation

/// Builds, from a directory's SentencePiece `tokenizer.model` and its `tokenizer_config.json`,
/// the `tokenizer.json` that transformers builds when a directory has no `tokenizer.json`:
/// `AutoTokenizer` then converts the slow `LlamaTokenizer` into `LlamaTokenizerFast` with
/// `LlamaConverter` (transformers `convert_slow_tokenizer.py`). The result goes through the same
/// reader as a real `tokenizer.json`, so both paths share one tokenizer implementation.
///
/// What the conversion produces (transformers 4.57):
/// - **model**: BPE over the pieces in id order (ids 0–2 with score 0), `unk_token` the trainer's
///   `unk_piece`, `fuse_unk` and `byte_fallback` on. Merges come from the vocabulary itself
///   (`generate_merges`): every split of every piece into two pieces that are both in the
///   vocabulary, ordered by the piece's score, then the left and right lengths (descending);
///   ties keep vocabulary order.
/// - **normalizer** (`legacy`, the default): prepend `▁` (when `add_prefix_space`, default true)
///   and replace spaces with `▁`. **pre_tokenizer** (`legacy: false`): Metaspace with
///   `prepend_scheme` `first` (or `never` without `add_prefix_space`) and no splitting.
/// - **decoder**: `▁` → space, byte fallback, fuse, and strip one leading space when a prefix
///   space is added.
/// - **added tokens**: CONTROL pieces (special) and USER_DEFINED pieces (not special), then
///   `added_tokens_decoder` from tokenizer_config.json — or, in older directories without it,
///   `added_tokens.json` with the special tokens named in `special_tokens_map.json`.
/// - **post-processor**: BOS before the text when `add_bos_token` (default true), EOS after it
///   when `add_eos_token` (default false).
enum SentencePieceConversion {
    /// Tokenizer classes whose slow tokenizer is SentencePiece and which transformers converts
    /// with `LlamaConverter` (nil: the file names no class).
    static let llamaClasses: Set<String> = ["LlamaTokenizer", "LlamaTokenizerFast"]

    /// The `tokenizer.json` object for `model` (the bytes of tokenizer.model) and the config.
    ///
    /// - Parameters:
    ///   - config: tokenizer_config.json (empty if absent).
    ///   - specialTokensMap: special_tokens_map.json, read only when the config has no
    ///     `added_tokens_decoder` (transformers ignores it otherwise).
    ///   - addedTokens: added_tokens.json, same rule.
    ///   - path: the tokenizer.model path, for errors.
    static func tokenizerJSON(model data: Data, config: [String: Any], specialTokensMap: [String: Any]?,
                              addedTokens: [String: Any]?, path: String) throws -> [String: Any] {
        if let cls = config["tokenizer_class"] as? String, !llamaClasses.contains(cls) {
            throw TokenizerError.unsupported(
                source: path, feature: "tokenizer_class \(cls) with only tokenizer.model (this build converts Llama-style SentencePiece models; add a tokenizer.json)")
        }
        let proto = try SentencePieceModelFile(data: data, path: path)
        guard proto.modelType == .bpe else {
            throw TokenizerError.unsupported(source: path, feature: "SentencePiece \(proto.modelType) model (this build converts BPE models, as Llama and Mistral ship)")
        }
        let legacy = config["legacy"] as? Bool ?? true
        // The slow tokenizer's default is true; a config that says `null` gives None, which the
        // converter treats as false.
        let addPrefixSpace = config.keys.contains("add_prefix_space") ? (config["add_prefix_space"] as? Bool ?? false) : true

        // Vocabulary in id order; later duplicates win in the BPE vocab, as in a Python dict.
        let pieces = proto.pieces.enumerated().map { i, p in (text: p.text, score: i < 3 ? 0 : p.score) }
        var vocab: [String: Int] = [:]
        for (i, p) in pieces.enumerated() { vocab[p.text] = i }
        let merges = generateMerges(pieces: pieces, vocab: vocab)

        var added: [[String: Any]] = []
        var addedIndex: [Int: Int] = [:]
        func add(id: Int, content: String, special: Bool, normalized: Bool, lstrip: Bool = false, rstrip: Bool = false) {
            let entry: [String: Any] = ["id": id, "content": content, "special": special, "normalized": normalized,
                                        "lstrip": lstrip, "rstrip": rstrip, "single_word": false]
            if let at = addedIndex[id] { added[at] = entry } else { addedIndex[id] = added.count; added.append(entry) }
        }
        for (i, p) in proto.pieces.enumerated() where p.type == .control || p.type == .userDefined {
            add(id: i, content: p.text, special: p.type == .control, normalized: false)
        }
        if let decoder = config["added_tokens_decoder"] as? [String: Any] {
            for (key, value) in decoder.sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
                guard let id = Int(key), id >= 0, id < 16_777_216, let t = value as? [String: Any], let content = t["content"] as? String else {
                    throw TokenizerError.invalidValue(source: path, key: "added_tokens_decoder.\(key)", reason: "needs an integer id and a content")
                }
                add(id: id, content: content, special: t["special"] as? Bool ?? false, normalized: t["normalized"] as? Bool ?? true,
                    lstrip: t["lstrip"] as? Bool ?? false, rstrip: t["rstrip"] as? Bool ?? false)
            }
        } else if let file = addedTokens {
            let specials = Set(specialTokenNames(config: config, map: specialTokensMap))
            for (content, value) in file.sorted(by: { $0.key < $1.key }) {
                guard let id = (value as? NSNumber)?.intValue, id >= 0, id < 16_777_216 else {
                    throw TokenizerError.invalidValue(source: path, key: "added_tokens.json \(quoted(content))", reason: "needs an integer id")
                }
                add(id: id, content: content, special: specials.contains(content), normalized: !specials.contains(content))
            }
        }
        // Every named special token is an added special token (transformers adds
        // `all_special_tokens_extended` after loading); those in the vocabulary keep their id.
        let addedContents = Set(added.compactMap { $0["content"] as? String })
        for name in specialTokenNames(config: config, map: specialTokensMap) where !addedContents.contains(name) {
            if let id = vocab[name], addedIndex[id] == nil { add(id: id, content: name, special: true, normalized: false) }
        }

        var root: [String: Any] = [
            "model": [
                "type": "BPE", "vocab": vocab, "merges": merges.map { [$0.0, $0.1] },
                "unk_token": proto.unknownPiece, "fuse_unk": true, "byte_fallback": true,
            ] as [String: Any],
            "added_tokens": added,
        ]
        if legacy {
            var steps: [[String: Any]] = []
            if addPrefixSpace { steps.append(["type": "Prepend", "prepend": "\u{2581}"]) }
            steps.append(["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"])
            root["normalizer"] = ["type": "Sequence", "normalizers": steps]
        } else {
            root["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}",
                                     "prepend_scheme": addPrefixSpace ? "first" : "never", "split": false]
        }
        var decoders: [[String: Any]] = [
            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
        ]
        if addPrefixSpace { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
        root["decoder"] = ["type": "Sequence", "decoders": decoders]
        return root
    }

    /// The settings of tokenizer_config.json that ``Tokenizer/init(huggingFaceFiles:source:)``
    /// reads, completed from special_tokens_map.json the way transformers' legacy loading does
    /// when the config has no `added_tokens_decoder`: the map's BOS/EOS/UNK/PAD win over the
    /// config's. Returns the config to use and a note for each value the map changed.
    static func mergedConfig(_ config: [String: Any], specialTokensMap map: [String: Any]?) -> ([String: Any], [String]) {
        guard let map, config["added_tokens_decoder"] == nil else { return (config, []) }
        var merged = config
        var notes: [String] = []
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            guard let value = map[key], let name = tokenName(value) else { continue }
            if let old = config[key].flatMap(tokenName), old != name {
                notes.append("\(key) \(quoted(name)) from special_tokens_map.json, not \(quoted(old)) from tokenizer_config.json (as transformers)")
            }
            merged[key] = name
        }
        return (merged, notes)
    }

    static func tokenName(_ value: Any) -> String? {
        if let s = value as? String { return s }
        return (value as? [String: Any])?["content"] as? String
    }

    /// Every special token name the config and the special-tokens map mention.
    static func specialTokenNames(config: [String: Any], map: [String: Any]?) -> [String] {
        var names: [String] = []
        for source in [config, map ?? [:]] {
            for key in ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"] {
                if let v = source[key], let n = tokenName(v) { names.append(n) }
            }
            for v in source["additional_special_tokens"] as? [Any] ?? [] {
                if let n = tokenName(v) { names.append(n) }
            }
        }
        return names
    }

    /// transformers' `generate_merges(vocab, vocab_scores)`: for each piece (first occurrence
    /// order, last score), every split into a left and right piece that are both in `vocab`,
    /// sorted by (left id, right id); then all of them sorted by (score, left length, right
    /// length) descending, ties in the order collected. Lengths count Unicode scalars, as
    /// Python's `len`.
    static func generateMerges(pieces: [(text: String, score: Float)], vocab: [String: Int]) -> [(String, String)] {
        var scoreOf: [String: Float] = [:]
        var order: [String] = []
        for p in pieces {
            if scoreOf[p.text] == nil { order.append(p.text) }
            scoreOf[p.text] = p.score
        }
        struct Candidate {
            let left: String, right: String
            let score: Float
            let leftLength: Int, rightLength: Int
            let sequence: Int
        }
        var candidates: [Candidate] = []
        for piece in order {
            let scalars = Array(piece.unicodeScalars)
            guard scalars.count > 1, let score = scoreOf[piece] else { continue }
            var local: [(String, String, Int, Int, Int, Int)] = []
            for cut in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<cut])
                r.append(contentsOf: scalars[cut...])
                let left = String(l), right = String(r)
                if let li = vocab[left], let ri = vocab[right] { local.append((left, right, li, ri, cut, scalars.count - cut)) }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for m in local {
                candidates.append(Candidate(left: m.0, right: m.1, score: score, leftLength: m.4, rightLength: m.5, sequence: candidates.count))
            }
        }
        candidates.sort {
            if $0.score != $1.score { return $0.score > $1.score }
            if $0.leftLength != $1.leftLength { return $0.leftLength > $1.leftLength }
            if $0.rightLength != $1.rightLength { return $0.rightLength > $1.rightLength }
            return $0.sequence < $1.sequence
        }
        return candidates.map { ($0.left, $0.right) }
    }
}
