import Foundation
import ModelFormats

/// One self-contained HTML page about a trace: five SVG figures, each with the numbers it
/// shows in a table beside it. The same figures are available as standalone SVG files.
public struct TraceReport {
    public struct Figure {
        /// File stem (`frequency`, `transitions`, `coactivation`, `reuse-distance`, `hit-rate`).
        public var name: String
        public var title: String
        public var svg: String
        /// HTML table(s) with the numbers.
        public var numbers: String
        public var caption: String
    }

    public let figures: [Figure]
    public let html: String

    public static let figureNames = ["frequency", "transitions", "coactivation", "reuse-distance", "hit-rate"]

    /// - Parameters:
    ///   - pair: the two MoE layers of the transition matrix (default: the first two).
    ///   - layer: the MoE layer of the co-activation matrix (default: the first).
    public init(trace: Trace, pair: (Int, Int)? = nil, layer: Int? = nil, title: String? = nil) throws {
        let h = trace.header
        let a = TraceAnalysis(trace)
        let moe = h.moeLayers
        guard !moe.isEmpty, h.expertCount > 0 else { throw TraceError.invalid(path: ModelFormatError.shown(h.model), reason: "the trace has no MoE layers to report on") }
        let pair = pair ?? (moe[0], moe.count > 1 ? moe[1] : moe[0])
        let layer = layer ?? moe[0]
        for l in [pair.0, pair.1, layer] where !moe.contains(l) {
            throw TraceError.invalid(path: ModelFormatError.shown(h.model), reason: "layer \(l) is not a MoE layer of this trace (MoE layers: \(moe.map(String.init).joined(separator: ", ")))")
        }
        let experts = (0..<h.expertCount).map { "e\($0)" }
        func pct(_ v: Double) -> String { String(format: "%.1f%%", 100 * v) }
        func table(_ head: [String], _ rows: [[String]]) -> String {
            "<table><tr>" + head.map { "<th>\(SVGDocument.escape($0))</th>" }.joined() + "</tr>"
                + rows.map { "<tr>" + $0.map { "<td>\(SVGDocument.escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table>"
        }
        var figures: [Figure] = []

        // 1. Frequency heatmap.
        let freq = a.frequency
        let share = freq.map { row -> [Double] in
            let t = Double(max(row.reduce(0, +), 1))
            return row.map { Double($0) / t }
        }
        let freqRows = zip(moe, share).map { l, row -> [String] in
            let entropy = -row.filter { $0 > 0 }.reduce(0) { $0 + $1 * log($1) }
            let top = row.enumerated().sorted { $0.element > $1.element }.prefix(3).map { "e\($0.offset) \(pct($0.element))" }
            return ["\(l)", top.joined(separator: ", "), pct(row.min() ?? 0), String(format: "%.1f", exp(entropy))]
        }
        figures.append(Figure(
            name: "frequency", title: "Expert frequency per layer",
            svg: Charts.heatmap(title: "Expert frequency per layer (share of routed slots)", matrix: share, rowLabels: moe.map { "L\($0)" },
                                columnLabels: experts, xLabel: "expert", yLabel: "MoE layer", format: pct),
            numbers: table(["layer", "top experts", "rarest", "effective experts"], freqRows),
            caption: "Each row is a MoE layer; a cell is the share of that layer's routed slots (tokens × top-k) that went to the expert. Effective experts = exp(entropy): \(h.expertCount) if routing were uniform."))

        // 2. Transition matrix.
        let trans = a.transitions(from: pair.0, to: pair.1)
        let cond = trans.map { row -> [Double] in
            let t = Double(max(row.reduce(0, +), 1))
            return row.map { Double($0) / t }
        }
        let transRows = cond.enumerated().compactMap { e, row -> [String]? in
            let total = trans[e].reduce(0, +)
            guard total > 0 else { return nil }
            let best = row.enumerated().sorted { $0.element > $1.element }.prefix(2)
            return ["e\(e)", "\(freq[safe: moe.firstIndex(of: pair.0) ?? 0]?[e] ?? 0)", best.map { "e\($0.offset) \(pct($0.element))" }.joined(separator: ", ")]
        }
        let weightedTop = zip(trans, cond).reduce(0.0) { $0 + Double($1.0.reduce(0, +)) * ($1.1.max() ?? 0) } / Double(max(trans.joined().reduce(0, +), 1))
        figures.append(Figure(
            name: "transitions", title: "Layer \(pair.0) → layer \(pair.1) transitions",
            svg: Charts.heatmap(title: "P(expert at layer \(pair.1) | expert at layer \(pair.0))", matrix: cond, rowLabels: experts, columnLabels: experts,
                                xLabel: "expert at layer \(pair.1)", yLabel: "expert at layer \(pair.0)", format: pct),
            numbers: table(["from", "tokens", "likeliest next"], transRows) + "<p>Top-1 next-expert probability, weighted by use: \(pct(weightedTop)) (uniform: \(pct(1 / Double(h.expertCount))))</p>",
            caption: "Row e: where the tokens that chose expert e at layer \(pair.0) went at layer \(pair.1) (rows sum to top-k). Concentrated rows are what path prediction exploits."))

        // 3. Co-activation.
        let co = a.coactivation(layer: layer)
        let tokens = max(a.routes.count, 1)
        var pairs: [(Int, Int, Int)] = []
        for e in 0..<h.expertCount { for f in (e + 1)..<max(e + 1, h.expertCount) where co[e][f] > 0 { pairs.append((e, f, co[e][f])) } }
        pairs.sort { $0.2 > $1.2 }
        figures.append(Figure(
            name: "coactivation", title: "Expert co-activation in layer \(layer)",
            svg: Charts.heatmap(title: "Tokens choosing both experts, layer \(layer)", matrix: co.map { $0.map { Double($0) / Double(tokens) } },
                                rowLabels: experts, columnLabels: experts, xLabel: "expert", yLabel: "expert", format: pct),
            numbers: table(["pair", "tokens", "share of tokens"], pairs.prefix(10).map { ["e\($0.0) + e\($0.1)", "\($0.2)", pct(Double($0.2) / Double(tokens))] }),
            caption: "Cell (e, f): share of tokens whose top-\(h.expertsPerToken) at layer \(layer) held both e and f. Pairs that fire together could be stored and loaded together."))

        // 4. Reuse distance.
        let hist = a.reuseHistogram
        let distances = a.reuseDistances.compactMap { $0 }
        let requests = max(a.reuseDistances.count, 1)
        let totalExperts = moe.count * h.expertCount
        let capacities = Array(Set([h.expertsPerToken, totalExperts / 8, totalExperts / 4, totalExperts / 2, totalExperts].filter { $0 > 0 })).sorted()
        let lruRows = capacities.map { c in ["\(c)", pct(Double(distances.filter { $0 < c }.count) / Double(requests))] }
        figures.append(Figure(
            name: "reuse-distance", title: "Reuse distance",
            svg: Charts.bars(title: "Reuse distance of expert requests", labels: hist.map(\.label), values: hist.map { Double($0.count) },
                             xLabel: "distinct other experts requested since the last use", yLabel: "requests", format: { String(Int($0)) }),
            numbers: table(["distance", "requests"], hist.map { [$0.label, "\($0.count)"] })
                + table(["pool (experts)", "LRU hit rate (no pinning)"], lruRows),
            caption: "For each of the \(a.reuseDistances.count) requests to the store: how many other experts were requested since this one was last used (\"first\": never before). An LRU pool of C experts hits every request with distance below C."))

        // 5. Hit rate over tokens.
        let points = a.hitRateOverTokens()
        let s = a.summary
        let hitSVG: String
        if points.isEmpty {
            var doc = SVGDocument(width: 480, height: 80)
            doc.text(10, 30, "Hit rate over tokens: the run was not paged (every expert resident).", size: 12)
            hitSVG = doc.svg
        } else {
            hitSVG = Charts.lines(title: "Expert cache hit rate over tokens", series: [
                Charts.Series(name: "last 32 steps", points: points.map { (Double($0.tokens), $0.window) }, color: Charts.palette[0]),
                Charts.Series(name: "cumulative", points: points.map { (Double($0.tokens), $0.cumulative) }, color: Charts.palette[1], dashed: true),
            ], xLabel: "tokens", yLabel: "hit rate", yRange: 0...1, xFormat: { String(Int($0.rounded())) }, yFormat: { pct($0) })
        }
        var perLayer: [[String]] = []
        for l in moe {
            let acc = trace.steps.flatMap { $0.layers.filter { $0.layer == l }.flatMap(\.accesses) }
            guard !acc.isEmpty else { continue }
            perLayer.append(["\(l)", "\(acc.count)", pct(Double(acc.filter(\.isHit).count) / Double(acc.count)),
                             String(format: "%.4f", Double(acc.reduce(0) { $0 + $1.stall }) * 1e-9)])
        }
        let totals = table(["", "value"], [
            ["tokens (steps)", "\(s.tokens) (\(s.prefillSteps) prefill, \(s.decodeSteps) decode)"],
            ["requests", "\(s.accesses): \(s.hits) hits, \(s.late) late prefetches, \(s.misses) misses"],
            ["hit rate", pct(s.hitRate)],
            ["loads", "\(s.loads) (\(s.prefetchLoads) prefetched, \(s.wastedPrefetches) wasted), \(s.bytesRead) bytes"],
            ["stall", String(format: "%.4f s of %.4f s", s.stallSeconds, s.wallSeconds)],
        ])
        figures.append(Figure(
            name: "hit-rate", title: "Hit rate over tokens", svg: hitSVG,
            numbers: totals + (perLayer.isEmpty ? "" : table(["layer", "requests", "hit rate", "stall s"], perLayer)),
            caption: "Hits among the requests of the last 32 steps and since the start; the cold start fills the pool, then the rate settles at what the pool size and policy allow."))

        self.figures = figures
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(SVGDocument.escape(title ?? "Expert trace: \(h.model)"))</title>
            <style>
            body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
            section { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; border-top: 1px solid #ddd; padding-top: 12px; margin-top: 12px; }
            .numbers { font-size: 13px; max-width: 520px; }
            table { border-collapse: collapse; margin-bottom: 10px; }
            th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
            th { background: #f3f3f3; }
            .caption { color: #555; }
            </style></head><body>
            <h1>\(SVGDocument.escape(title ?? "Expert trace"))</h1>
            <p>\(SVGDocument.escape(h.model)) (\(SVGDocument.escape(h.architecture)), \(h.layerCount) layers, \(moe.count) MoE × \(h.expertCount) experts, top-\(h.expertsPerToken)),
            \(SVGDocument.escape(h.mode)) over \(s.tokens) tokens of \(SVGDocument.escape(h.source)).
            Pool: \(h.paged ? "\(h.poolBytes ?? 0) bytes (\(h.poolExperts ?? 0) experts of \(h.expertBytes) bytes)" : "not paged"),
            policy \(SVGDocument.escape(h.cachePolicy)), prefetch \(SVGDocument.escape(h.prefetch)), \(h.threads) threads. Recorded \(SVGDocument.escape(h.created)).</p>

            """
        for f in figures {
            page += "<section id=\"\(f.name)\"><div class=\"figure\">\(f.svg)</div><div class=\"numbers\"><h2>\(SVGDocument.escape(f.title))</h2><p class=\"caption\">\(SVGDocument.escape(f.caption))</p>\(f.numbers)</div></section>\n"
        }
        page += "</body></html>\n"
        html = page
    }
}
