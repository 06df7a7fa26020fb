import Foundation

/// `--prefetch auto` (docs/design.md §5, *Prefetch that pays or stays off*): prefetching runs only
/// while the measured compute time of a MoE layer exceeds the read time of the misses it would
/// hide, only the experts the gate is uncertain about beyond its top-k are guessed extra, and the
/// bytes guessed per layer are capped by what the disk can read during the layer besides the
/// demand reads. Every input is measured during decode; the decisions are pure functions of them.
///
/// Part of the prefetch driver's state: used only while the transformer's lock is held.
struct PrefetchGovernor {
    /// What the store has counted so far (cumulative), sampled once per MoE layer.
    struct IOSample: Equatable {
        var bytesRead: Int
        var readSeconds: Double
        /// Requests a prefetch would have had to hide: misses, and prefetches that were used.
        var wouldMiss: Int
        /// Average bytes of one expert.
        var expertBytes: Int
    }

    /// Weight of a new measurement in the running averages.
    static let smoothing = 0.2
    /// Switch on above this ratio of compute to miss-read time and off below `offRatio`, so
    /// noise near 1 does not flip it every layer.
    static let onRatio = 1.1, offRatio = 0.9
    /// Fewer likely misses per layer than this: nothing to hide, stay off.
    static let minimumMisses = 0.05
    /// Beyond the top-k, a candidate is guessed only if its score is at least this fraction of
    /// the k-th one's (the gate cannot tell them apart).
    static let uncertainty = 0.5

    /// Seconds one MoE layer takes (attention, routing, experts), averaged.
    private(set) var layerSeconds: Double?
    /// Direct-read bytes per second, averaged over the reads seen.
    private(set) var bandwidth: Double?
    /// Requests per layer that would miss without prefetching, averaged.
    private(set) var missesPerLayer: Double?
    private(set) var enabled = false
    private var expertBytes = 0
    private var last: (time: UInt64, layer: Int, sample: IOSample)?

    /// Read time of a layer's likely misses, if measured.
    var missSeconds: Double? {
        guard let bandwidth, let missesPerLayer, bandwidth > 0 else { return nil }
        return missesPerLayer * Double(expertBytes) / bandwidth
    }

    /// Records that MoE layer `layer` routed at `time` (ns) with the store's counters at
    /// `sample`; `previous` is the MoE layer before it, whose interval this closes. Returns
    /// whether prefetching is on now.
    mutating func observe(layer: Int, previous: Int?, time: UInt64, sample: IOSample) -> Bool {
        defer { last = (time, layer, sample) }
        expertBytes = sample.expertBytes
        guard let last, let previous, last.layer == previous, time > last.time else { return enabled }
        let seconds = Double(time - last.time) * 1e-9
        layerSeconds = PrefetchGovernor.average(layerSeconds, seconds)
        missesPerLayer = PrefetchGovernor.average(missesPerLayer, Double(max(0, sample.wouldMiss - last.sample.wouldMiss)))
        let bytes = sample.bytesRead - last.sample.bytesRead, read = sample.readSeconds - last.sample.readSeconds
        if bytes > 0, read > 0 { bandwidth = PrefetchGovernor.average(bandwidth, Double(bytes) / read) }
        if let layerSeconds, let missesPerLayer, let bandwidth {
            enabled = PrefetchGovernor.pays(layerSeconds: layerSeconds, missesPerLayer: missesPerLayer, expertBytes: expertBytes,
                                            bandwidth: bandwidth, currently: enabled)
        }
        return enabled
    }

    /// Bytes that may be guessed for the layers ahead now (``headroom(layerSeconds:bandwidth:demandBytes:)``).
    var headroomBytes: Int {
        guard let layerSeconds, let bandwidth, let missesPerLayer else { return 0 }
        return PrefetchGovernor.headroom(layerSeconds: layerSeconds, bandwidth: bandwidth, demandBytes: missesPerLayer * Double(expertBytes))
    }

    static func average(_ old: Double?, _ new: Double) -> Double {
        old.map { $0 + smoothing * (new - $0) } ?? new
    }

    /// Whether prefetching pays: a layer's compute time exceeds the read time of its likely
    /// misses (with hysteresis around 1: `currently` is the decision so far), and there are
    /// misses to hide at all.
    static func pays(layerSeconds: Double, missesPerLayer: Double, expertBytes: Int, bandwidth: Double, currently: Bool) -> Bool {
        guard missesPerLayer >= minimumMisses, bandwidth > 0, expertBytes > 0 else { return false }
        let ratio = layerSeconds / (missesPerLayer * Double(expertBytes) / bandwidth)
        return ratio > (currently ? offRatio : onRatio)
    }

    /// What the disk can read during one layer besides its demand reads: the most a prefetch
    /// may ask for per layer without slowing the reads the pass waits for.
    static func headroom(layerSeconds: Double, bandwidth: Double, demandBytes: Double) -> Int {
        Int(max(0, min(Double(Int.max / 2), layerSeconds * bandwidth - demandBytes)))
    }

    /// The experts to guess for a layer from its scores ranked best first (`ranked`, as the
    /// predictor returned them, with `score(e)`): the top `k`, then further ones only while the
    /// gate is uncertain (their score at least ``uncertainty`` × the k-th's), up to `width`.
    static func uncertain(_ ranked: [Int], score: (Int) -> Double, k: Int, width: Int) -> [Int] {
        guard ranked.count > k, k > 0 else { return Array(ranked.prefix(width)) }
        let kth = score(ranked[k - 1])
        var chosen = Array(ranked.prefix(k))
        for e in ranked.dropFirst(k).prefix(max(0, width - k)) where score(e) >= uncertainty * kth {
            chosen.append(e)
        }
        return chosen
    }

    /// The longest prefix of `keys` whose sizes add up to at most `budget` bytes.
    static func capped<Key>(_ keys: [Key], size: (Key) -> Int, budget: Int) -> [Key] {
        var total = 0
        var out: [Key] = []
        for key in keys {
            total += size(key)
            guard total <= budget else { break }
            out.append(key)
        }
        return out
    }
}
