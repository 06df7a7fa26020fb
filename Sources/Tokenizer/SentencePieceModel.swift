/// SentencePiece BPE encoding as llama.cpp's `llm_tokenizer_spm` does it for GGUF
/// `tokenizer.ggml.model = llama`: one symbol per UTF-8 character, then repeatedly merge the
/// adjacent pair whose concatenation is a token with the highest score (ties: leftmost);
/// characters that never became a token are emitted as `<0xNN>` byte tokens.
///
/// The caller has already replaced spaces with `▁` and added the dummy prefix.
struct SentencePieceModel {
    let ids: [[UInt8]: Int32]
    let scores: [Float]
    /// `<0xNN>` token per byte, or -1.
    let byteIds: [Int32]
    let unknownId: Int32?

    init(tokens: [String], scores: [Float], unknownId: Int?) {
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[Array(t.utf8)] == nil { ids[Array(t.utf8)] = Int32(i) }
        self.ids = ids
        self.scores = scores
        byteIds = (0..<256).map { b in
            ids[Array(BytePairModel.byteTokenName(UInt8(b)).utf8)] ?? ids[[UInt8(b)]] ?? -1
        }
        self.unknownId = unknownId.map(Int32.init)
    }

    private struct Bigram {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32
        /// Higher score first, then the leftmost pair (llama.cpp's `llm_bigram_spm::comparator`).
        @inline(__always) func precedes(_ o: Bigram) -> Bool {
            score != o.score ? score > o.score : left < o.left
        }
    }

    func encode(_ text: [UInt8], into out: inout [Int32]) {
        if text.isEmpty { return }
        // symbols: byte offset and length per character, linked list
        var start: [Int32] = [], length: [Int32] = []
        var i = 0
        while i < text.count {
            let n = min(utf8Length(text[i]), text.count - i)
            start.append(Int32(i)); length.append(Int32(n))
            i += n
        }
        let count = start.count
        var prev = (0..<count).map { Int32($0 - 1) }
        var next = (0..<count).map { Int32($0 + 1) }
        next[count - 1] = -1

        var heap: [Bigram] = []
        func push(_ b: Bigram) {
            heap.append(b)
            var c = heap.count - 1
            while c > 0 {
                let p = (c - 1) / 2
                guard heap[c].precedes(heap[p]) else { break }
                heap.swapAt(c, p); c = p
            }
        }
        func pop() -> Bigram? {
            guard let first = heap.first else { return nil }
            let last = heap.removeLast()
            if heap.isEmpty { return first }
            heap[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < heap.count && heap[l].precedes(heap[m]) { m = l }
                if r < heap.count && heap[r].precedes(heap[m]) { m = r }
                if m == p { break }
                heap.swapAt(p, m); p = m
            }
            return first
        }
        func tryAdd(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let a = Int(start[Int(l)]), end = Int(start[Int(r)] + length[Int(r)])
            guard let id = ids[Array(text[a..<end])], Int(id) < scores.count else { return }
            push(Bigram(score: scores[Int(id)], left: l, right: r, size: Int32(end - a)))
        }
        for k in 1..<max(count, 1) { tryAdd(Int32(k - 1), Int32(k)) }
        while let b = pop() {
            let l = Int(b.left), r = Int(b.right)
            // skip pairs whose symbols changed since the bigram was queued
            guard length[l] > 0, length[r] > 0, length[l] + length[r] == b.size, next[l] == b.right else { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAdd(prev[l], Int32(l))
            tryAdd(Int32(l), next[l])
        }
        var k: Int32 = 0
        while k >= 0 {
            let s = Int(start[Int(k)]), e = s + Int(length[Int(k)])
            if let id = ids[Array(text[s..<e])] {
                out.append(id)
            } else {
                for byte in text[s..<e] {
                    let id = byteIds[Int(byte)]
                    if id >= 0 { out.append(id) } else if let unk = unknownId { out.append(unk) }
                }
            }
            k = next[Int(k)]
        }
    }
}
