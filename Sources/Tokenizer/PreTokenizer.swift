import Foundation
import ModelFormats

/// Text normalization applied to each piece of text between added tokens (HF `normalizers`).
enum Normalizer {
    case nfc, nfd, nfkc, nfkd, lowercase
    /// Prepends the string to non-empty text (SentencePiece's dummy prefix, `▁`).
    case prepend(String)
    case replace(String, with: String)

    func apply(_ s: String) -> String {
        switch self {
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case .lowercase: return s.lowercased()
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .replace(a, b): return a.isEmpty ? s : s.replacingOccurrences(of: a, with: b)
        }
    }
}

/// A regular expression used to split text, compiled once. Patterns use the Oniguruma syntax
/// of tokenizer.json files (`\p{L}`, `(?i:…)`, `(?!\S)`), which Swift's `Regex` accepts;
/// matching runs on Unicode scalars, as Oniguruma does.
///
/// `@unchecked Sendable`: the standard library's `Regex` is not declared `Sendable`, yet it is
/// an immutable value whose one piece of mutable state, the lazily compiled matcher program,
/// is published with an atomic compare-and-swap (`Regex.Program`), so matching one `Regex`
/// from several threads at once is safe. Both stored properties are `let`.
struct SplitPattern: @unchecked Sendable {
    let source: String
    let regex: Regex<AnyRegexOutput>

    init(regex pattern: String, origin: String) throws {
        source = pattern
        do {
            regex = try Regex(Self.stableRanges(pattern)).matchingSemantics(.unicodeScalar)
        } catch {
            throw TokenizerError.unsupported(source: origin, feature: "pre-tokenizer regex \(quoted(pattern)) (\(ModelFormatError.shown("\(error)")))")
        }
    }

    init(literal: String) {
        source = literal
        regex = Regex(verbatim: literal).matchingSemantics(.unicodeScalar)
    }

    /// Swift's regex parser rejects class ranges whose bounds change under NFC (U+1FD3, the
    /// Kelvin sign U+212A, …), which Oniguruma accepts as plain code points. Such a bound is
    /// moved inward and listed on its own, which keeps the same set of scalars.
    static func stableRanges(_ pattern: String) -> String {
        func stable(_ v: UInt32) -> Bool {
            guard let s = Unicode.Scalar(v) else { return false }
            let n = String(Character(s)).precomposedStringWithCanonicalMapping.unicodeScalars
            return n.count == 1 && n.first == s
        }
        func escaped(_ v: UInt32) -> String { "\\u{" + String(v, radix: 16) + "}" }
        func escapedSingle(_ v: UInt32) -> String {
            guard let s = Unicode.Scalar(v) else { return "" }  // surrogate code points: nothing to match
            return String(Character(s))
        }
        let u = Array(pattern.unicodeScalars)
        var out = ""
        var i = 0
        var inClass = false
        while i < u.count {
            let c = u[i]
            if c == "\\" {
                out.unicodeScalars.append(c)
                if i + 1 < u.count { out.unicodeScalars.append(u[i + 1]) }
                i += 2
                continue
            }
            if !inClass {
                if c == "[" { inClass = true; out.unicodeScalars.append(c); i += 1; if i < u.count && u[i] == "^" { out += "^"; i += 1 }; continue }
                out.unicodeScalars.append(c); i += 1; continue
            }
            if c == "]" { inClass = false; out.unicodeScalars.append(c); i += 1; continue }
            if i + 2 < u.count, u[i + 1] == "-", u[i + 2] != "]", u[i + 2] != "\\",
               !(stable(c.value) && stable(u[i + 2].value)) {
                var lo = c.value, hi = u[i + 2].value
                while lo <= hi && !stable(lo) { out += escapedSingle(lo); lo += 1 }
                while hi >= lo && !stable(hi) { out += escapedSingle(hi); hi -= 1 }
                if lo < hi { out += escaped(lo) + "-" + escaped(hi) } else if lo == hi { out += escaped(lo) }
                i += 3
                continue
            }
            out.unicodeScalars.append(c)
            i += 1
        }
        return out

    }

    /// Ranges of the non-overlapping matches, left to right (empty matches are skipped).
    func matches(in s: Substring) -> [Range<String.Index>] {
        var out: [Range<String.Index>] = []
        for m in s.matches(of: regex) where !m.range.isEmpty { out.append(m.range) }
        return out
    }
}

/// One pre-tokenization step (HF `pre_tokenizers`): turns each piece into smaller pieces.
enum PreTokenizerStep {
    /// What happens to a match (HF `SplitDelimiterBehavior`).
    enum Behavior: String {
        case isolated = "Isolated", removed = "Removed"
        case mergedWithPrevious = "MergedWithPrevious", mergedWithNext = "MergedWithNext"
    }
    enum PrependScheme: String { case always, first, never }

    case split(SplitPattern, Behavior)
    /// GPT-2's byte-level step. The byte → character mapping itself is done by the model
    /// (`BytePairModel.Alphabet.bytes`); here only the optional GPT-2 regex and prefix space.
    case byteLevel(addPrefixSpace: Bool, regex: SplitPattern?)
    /// SentencePiece-style: spaces become `replacement`, optionally one is prepended, and
    /// optionally each `replacement` starts a new piece.
    case metaspace(replacement: String, prependScheme: PrependScheme, split: Bool)
    /// Digits split off (`individual`: one digit per piece).
    case digits(individual: Bool)

    /// - Parameter atStart: the text being split starts at offset 0 of the input (no added
    ///   token before it); Metaspace's `first` scheme prepends only there.
    func apply(_ pieces: [Substring], atStart: Bool) -> [Substring] {
        var out: [Substring] = []
        out.reserveCapacity(pieces.count)
        for (n, piece) in pieces.enumerated() {
            switch self {
            case let .split(pattern, behavior):
                Self.split(piece, at: pattern.matches(in: piece), behavior, into: &out)
            case let .byteLevel(addPrefixSpace, regex):
                var p = piece
                if addPrefixSpace && !p.hasPrefix(" ") { p = Substring(" " + p) }
                if let regex { Self.split(p, at: regex.matches(in: p), .isolated, into: &out) } else { out.append(p) }
            case let .metaspace(replacement, scheme, split):
                var s = piece.replacingOccurrences(of: " ", with: replacement)
                let prepend = scheme == .always || (scheme == .first && atStart && n == 0)
                if prepend && !s.hasPrefix(replacement) { s = replacement + s }
                let p = Substring(s)
                if split {
                    var ranges: [Range<String.Index>] = []
                    var i = p.startIndex
                    while let r = p[i...].range(of: replacement) { ranges.append(r); i = r.upperBound }
                    Self.split(p, at: ranges, .mergedWithNext, into: &out)
                } else {
                    out.append(p)
                }
            case let .digits(individual):
                var ranges: [Range<String.Index>] = []
                var i = piece.startIndex
                while i < piece.endIndex {
                    let isDigit = piece.unicodeScalars[i].properties.numericType == .decimal
                    guard isDigit else { i = piece.unicodeScalars.index(after: i); continue }
                    var j = piece.unicodeScalars.index(after: i)
                    if !individual {
                        while j < piece.endIndex, piece.unicodeScalars[j].properties.numericType == .decimal {
                            j = piece.unicodeScalars.index(after: j)
                        }
                    }
                    ranges.append(i..<j)
                    i = j
                }
                Self.split(piece, at: ranges, .isolated, into: &out)
            }
        }
        return out
    }

    /// HF `NormalizedString::split`: the text is cut into gaps and matches, and `behavior`
    /// decides what happens to each match.
    private static func split(_ s: Substring, at matches: [Range<String.Index>], _ behavior: Behavior, into out: inout [Substring]) {
        if matches.isEmpty { if !s.isEmpty { out.append(s) }; return }
        var segments: [(range: Range<String.Index>, isMatch: Bool)] = []
        var cursor = s.startIndex
        for m in matches {
            if cursor < m.lowerBound { segments.append((cursor..<m.lowerBound, false)) }
            segments.append((m, true))
            cursor = m.upperBound
        }
        if cursor < s.endIndex { segments.append((cursor..<s.endIndex, false)) }
        switch behavior {
        case .isolated:
            for seg in segments { out.append(s[seg.range]) }
        case .removed:
            for seg in segments where !seg.isMatch { out.append(s[seg.range]) }
        case .mergedWithPrevious:
            var merged: [Range<String.Index>] = []
            var previousMatch = false
            for seg in segments {
                if seg.isMatch && !previousMatch, let last = merged.last {
                    merged[merged.count - 1] = last.lowerBound..<seg.range.upperBound
                } else {
                    merged.append(seg.range)
                }
                previousMatch = seg.isMatch
            }
            for r in merged { out.append(s[r]) }
        case .mergedWithNext:
            var merged: [Range<String.Index>] = []
            var nextIsMatch = false
            for seg in segments.reversed() {
                if seg.isMatch && !nextIsMatch, let last = merged.last {
                    merged[merged.count - 1] = seg.range.lowerBound..<last.upperBound
                } else {
                    merged.append(seg.range)
                }
                nextIsMatch = seg.isMatch
            }
            for r in merged.reversed() { out.append(s[r]) }
        }
    }
}

/// The pre-tokenizers llama.cpp selects with `tokenizer.ggml.pre`, written as the regexes of
/// the tokenizer.json files those names stand for (llama.cpp's own copies are adapted for its
/// regex engine; see docs/tokenizer.md).
enum PreTokenizerTable {
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let o200k = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let deepseekV3 = [
        #"\p{N}{1,3}"#,
        "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
    ]
    static let deepseekLLM = [
        "[\r\n]",
        "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}"
            + "\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}"
            + "\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}"
            + "\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}"
            + "\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}"
            + "\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}"
            + "\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}"
            + "\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}"
            + "\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}"
            + "\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}"
            + "\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
        "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
        "\\s+$",
        "[\u{4E00}-\u{9FA5}\u{0800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
        "\\p{N}+",
    ]

    struct Entry {
        /// Split regexes applied in order (each to the pieces of the previous one); empty means
        /// GPT-2's regex inside the byte-level step.
        let splits: [String]
        let normalizers: [Normalizer]
        let ignoreMerges: Bool
        /// llama.cpp's default for `add_bos` with this pre-tokenizer (the file's key wins).
        let addBOS: Bool
    }

    /// `tokenizer.ggml.pre` → pre-tokenizer. Names are llama.cpp's (`llama_vocab::impl::load`).
    static func entry(_ name: String) -> Entry? {
        switch name {
        case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan":
            // Qwen2/Qwen3 tokenizer.json files normalize to NFC; GGUF does not record it.
            return Entry(splits: [qwen2], normalizers: [.nfc], ignoreMerges: false, addBOS: false)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe":
            return Entry(splits: [llama3], normalizers: [], ignoreMerges: true, addBOS: true)
        case "chatglm-bpe":
            return Entry(splits: [llama3], normalizers: [], ignoreMerges: false, addBOS: false)
        case "olmo", "gpt-2", "default", "mpt", "phi-2", "jina-es", "jina-de", "roberta-bpe", "exaone4":
            return Entry(splits: [], normalizers: [], ignoreMerges: false, addBOS: false)
        case "deepseek-v3", "hunyuan-dense":
            return Entry(splits: deepseekV3, normalizers: [], ignoreMerges: false, addBOS: false)
        case "deepseek-llm":
            return Entry(splits: deepseekLLM, normalizers: [], ignoreMerges: false, addBOS: false)
        case "gpt-4o", "llama4", "minimax-m2":
            return Entry(splits: [o200k], normalizers: [], ignoreMerges: false, addBOS: false)
        default:
            return nil
        }
    }

    static let knownNames = ["qwen2", "llama-bpe", "llama3", "olmo", "gpt-2", "default", "deepseek-llm", "deepseek-v3", "gpt-4o"]
}
