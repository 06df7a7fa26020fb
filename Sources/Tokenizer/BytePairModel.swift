/// Rank-based byte-pair encoding as Hugging Face `tokenizers` (`models::bpe`) and llama.cpp's
/// `llm_tokenizer_bpe` do it: a word starts as one symbol per character (per byte for
/// byte-level vocabularies), and the adjacent pair with the lowest merge rank is merged until
/// no listed pair remains; equal ranks merge leftmost first.
///
/// Symbols live in a doubly linked list inside arrays; candidate merges sit in a binary
/// min-heap keyed by (rank, position) and are re-validated when popped.
struct BytePairModel {
    /// How a word's characters become the first symbols.
    enum Alphabet {
        /// Byte-level BPE: every UTF-8 byte is one symbol, `byteIds[b]`.
        case bytes(byteIds: [Int32])
        /// Character BPE (SentencePiece converted to BPE): one symbol per Unicode scalar,
        /// looked up by its UTF-8; unknown characters become `<0xNN>` tokens (byte fallback)
        /// or the unknown token.
        case characters(byteFallback: [Int32]?)
    }

    /// Token text (UTF-8 of the vocabulary string) → id.
    let ids: [[UInt8]: Int32]
    /// (left id << 32 | right id) → (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]
    let alphabet: Alphabet
    /// If the whole word is a token, emit it without merging (Llama-3's `ignore_merges`).
    let ignoreMerges: Bool
    let unknownId: Int32?
    let fuseUnknown: Bool

    /// - Parameter mergeList: pairs of token strings in rank order; pairs naming tokens the
    ///   vocabulary lacks are skipped.
    init(vocabulary: [String], mergeList: [(String, String)], byteLevel: Bool, byteFallback: Bool,
         ignoreMerges: Bool, unknownId: Int?, fuseUnknown: Bool) {
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(vocabulary.count)
        for (i, t) in vocabulary.enumerated() where ids[Array(t.utf8)] == nil { ids[Array(t.utf8)] = Int32(i) }
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            guard let l = ids[Array(a.utf8)], let r = ids[Array(b.utf8)], let m = ids[Array((a + b).utf8)] else { continue }
            let key = UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
            if merges[key] == nil { merges[key] = (Int32(rank), m) }
        }
        self.ids = ids
        self.merges = merges
        if byteLevel {
            alphabet = .bytes(byteIds: (0..<256).map { ids[ByteLevel.utf8[$0]] ?? -1 })
        } else {
            let fallback: [Int32]? = byteFallback
                ? (0..<256).map { ids[Array(Self.byteTokenName(UInt8($0)).utf8)] ?? -1 } : nil
            alphabet = .characters(byteFallback: fallback)
        }
        self.ignoreMerges = ignoreMerges
        self.unknownId = unknownId.map(Int32.init)
        self.fuseUnknown = fuseUnknown
    }

    static func byteTokenName(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
    }

    /// Token ids of one pre-tokenized word (raw UTF-8 bytes, before any byte-level mapping).
    func encode(word: ArraySlice<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        if ignoreMerges {
            let key: [UInt8]
            switch alphabet {
            case .bytes: key = ByteLevel.encode(word)
            case .characters: key = Array(word)
            }
            if let id = ids[key] { out.append(id); return }
        }
        var symbols = initialSymbols(word)
        merge(&symbols)
        out.append(contentsOf: symbols)
    }

    private func initialSymbols(_ word: ArraySlice<UInt8>) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        switch alphabet {
        case let .bytes(byteIds):
            var lastWasUnknown = false
            for b in word {
                let id = byteIds[Int(b)]
                if id >= 0 { symbols.append(id); lastWasUnknown = false; continue }
                appendUnknown(&symbols, &lastWasUnknown)
            }
        case let .characters(fallback):
            var i = word.startIndex
            var lastWasUnknown = false
            while i < word.endIndex {
                let n = min(utf8Length(word[i]), word.endIndex - i)
                let ch = word[i..<(i + n)]
                if let id = ids[Array(ch)] {
                    symbols.append(id); lastWasUnknown = false
                } else if let fallback, ch.allSatisfy({ fallback[Int($0)] >= 0 }) {
                    for b in ch { symbols.append(fallback[Int(b)]) }
                    lastWasUnknown = false
                } else {
                    appendUnknown(&symbols, &lastWasUnknown)
                }
                i += n
            }
        }
        return symbols
    }

    private func appendUnknown(_ symbols: inout [Int32], _ lastWasUnknown: inout Bool) {
        guard let unk = unknownId else { return }  // HF drops characters it cannot represent
        if fuseUnknown && lastWasUnknown { return }
        symbols.append(unk)
        lastWasUnknown = true
    }

    private func mergeKey(_ l: Int32, _ r: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
    }

    /// Applies merges in rank order (ties: leftmost), like HF `Word::merge_all`.
    private func merge(_ symbols: inout [Int32]) {
        let n = symbols.count
        if n < 2 { return }
        if n == 2 {
            if let m = merges[mergeKey(symbols[0], symbols[1])] { symbols = [m.id] }
            return
        }
        var next = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i + 1) }
            buf[n - 1] = -1
            count = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i - 1) }
            count = n
        }
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merges[mergeKey(symbols[i], symbols[i + 1])] {
                heap.push(.init(rank: m.rank, position: Int32(i), id: m.id))
            }
        }
        while let top = heap.pop() {
            let p = Int(top.position)
            guard alive[p] else { continue }
            let q = Int(next[p])
            guard q >= 0 else { continue }
            // Still the same pair? (a neighbour may have merged since this entry was pushed)
            guard let m = merges[mergeKey(symbols[p], symbols[q])], m.id == top.id else { continue }
            symbols[p] = m.id
            alive[q] = false
            let r = Int(next[q])
            next[p] = Int32(r)
            if r >= 0 { prev[r] = Int32(p) }
            let l = Int(prev[p])
            if l >= 0, let lm = merges[mergeKey(symbols[l], symbols[p])] {
                heap.push(.init(rank: lm.rank, position: Int32(l), id: lm.id))
            }
            if r >= 0, let rm = merges[mergeKey(symbols[p], symbols[r])] {
                heap.push(.init(rank: rm.rank, position: Int32(p), id: rm.id))
            }
        }
        var result: [Int32] = []
        var i = 0
        while i >= 0 { result.append(symbols[i]); i = Int(next[i]) }
        symbols = result
    }
}

/// Binary min-heap of candidate merges ordered by (rank, position).
struct MergeHeap {
    struct Entry {
        var rank: Int32
        var position: Int32
        var id: Int32
        @inline(__always) func precedes(_ o: Entry) -> Bool {
            rank != o.rank ? rank < o.rank : position < o.position
        }
    }
    private var items: [Entry] = []

    mutating func push(_ e: Entry) {
        items.append(e)
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard items[c].precedes(items[p]) else { break }
            items.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var p = 0
        let n = items.count
        while true {
            let l = 2 * p + 1, r = l + 1
            var m = p
            if l < n && items[l].precedes(items[m]) { m = l }
            if r < n && items[r].precedes(items[m]) { m = r }
            if m == p { break }
            items.swapAt(p, m)
            p = m
        }
        return first
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for continuation or invalid bytes, so
/// malformed input still advances).
@inline(__always) func utf8Length(_ lead: UInt8) -> Int {
    switch lead {
    case 0xF0...0xF7: return 4
    case 0xE0...0xEF: return 3
    case 0xC0...0xDF: return 2
    default: return 1
    }
}
