import ExpertStore

/// Prefill in waves (docs/design.md §5, *Prefill in waves*): a MoE layer of a prompt chunk
/// visits each expert its tokens chose once, in expert order, and applies it to all of them;
/// while one expert computes, the reads of the next missing ones are already in flight on the
/// store's loader thread.
///
/// Expert order is kept (hits are not moved ahead of misses) because each token's output sums
/// its experts' contributions in that order: the logits stay bit-identical to all-resident.
/// The read-ahead goes through ``ExpertProvider/prefetch(_:currentLayer:)`` with the layer
/// computing as the current one, so it never evicts an expert of this layer, pinned or not yet
/// used; when the pool has no room for it, the expert is simply loaded on demand when its turn
/// comes. Providers that keep every expert resident report nothing missing, and the wave is the
/// plain loop.
struct ExpertWave {
    let layer: Int
    /// The experts to visit, in the order they compute.
    let experts: [Int]
    /// Positions in ``experts`` of those a request would read now, ascending.
    let missing: [Int]
    /// Missing experts whose reads are kept in flight ahead of the expert computing
    /// (``ExecutorOptions/readAhead``: the next one while this one computes, and one more so a
    /// short expert does not leave the disk idle).
    let readAhead: Int

    init(layer: Int, experts: [Int], provider: any ExpertProvider, readAhead: Int) {
        // Without read-ahead nothing is queued: no need to ask the store what is missing.
        let absent: Set<Int> = readAhead == 0 ? [] : Set(provider.notResident(experts.map { ExpertKey(layer: layer, expert: $0) }).map(\.expert))
        self.init(layer: layer, experts: experts, missing: experts.indices.filter { absent.contains(experts[$0]) }, readAhead: readAhead)
    }

    init(layer: Int, experts: [Int], missing: [Int], readAhead: Int = ExecutorOptions.defaultReadAhead) {
        self.layer = layer
        self.experts = experts
        self.missing = missing
        self.readAhead = readAhead
    }

    /// Which of ``missing`` to queue before position `index` computes, when the first `queued`
    /// of them are queued or passed already: those after `index`, until ``readAhead`` are in
    /// flight ahead of it. Pure, for tests.
    func reads(before index: Int, queued: Int) -> Range<Int> {
        let ahead = missing.firstIndex { $0 > index } ?? missing.count
        let from = max(queued, ahead)
        return from..<max(from, min(missing.count, ahead + readAhead))
    }

    /// Visits every expert in order, pinned for `body`, with reads queued ahead.
    func run(provider: any ExpertProvider, _ body: (Int, ExpertWeights) throws -> Void) throws {
        var queued = 0
        for (i, e) in experts.enumerated() {
            let range = reads(before: i, queued: queued)
            if !range.isEmpty {
                let keys = range.map { ExpertKey(layer: layer, expert: experts[missing[$0]]) }
                // The store queues what fits, in order, and stops at the first that does not; an
                // expert it refused is offered again before the next one computes (or is loaded
                // on demand when its turn comes).
                let accepted = provider.prefetch(keys, currentLayer: layer)
                if let last = accepted.last, let j = keys.lastIndex(of: last) { queued = range.lowerBound + j + 1 }
            }
            try provider.withExpert(layer: layer, expert: e) { try body(e, $0) }
        }
    }
}
