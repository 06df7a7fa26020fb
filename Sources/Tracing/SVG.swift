import Foundation

/// A hand-written SVG document: shapes in user units, text escaped, no dependencies.
public struct SVGDocument {
    public let width: Double
    public let height: Double
    private var elements: [String] = []

    public init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    public static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A number with at most two decimals, as SVG attributes and labels write it.
    public static func n(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    public mutating func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, stroke: String? = nil, title: String? = nil) {
        let s = stroke.map { " stroke=\"\($0)\" stroke-width=\"0.5\"" } ?? ""
        let t = title.map { "<title>\(SVGDocument.escape($0))</title>" } ?? ""
        elements.append("<rect x=\"\(SVGDocument.n(x))\" y=\"\(SVGDocument.n(y))\" width=\"\(SVGDocument.n(max(w, 0)))\" height=\"\(SVGDocument.n(max(h, 0)))\" fill=\"\(fill)\"\(s)>\(t)</rect>")
    }

    public enum Anchor: String { case start, middle, end }

    public mutating func text(_ x: Double, _ y: Double, _ string: String, size: Double = 11, anchor: Anchor = .start, bold: Bool = false,
                              rotate: Double? = nil, fill: String = "#222") {
        let r = rotate.map { " transform=\"rotate(\(SVGDocument.n($0)) \(SVGDocument.n(x)) \(SVGDocument.n(y)))\"" } ?? ""
        elements.append("<text x=\"\(SVGDocument.n(x))\" y=\"\(SVGDocument.n(y))\" font-size=\"\(SVGDocument.n(size))\" text-anchor=\"\(anchor.rawValue)\" fill=\"\(fill)\"\(bold ? " font-weight=\"bold\"" : "")\(r)>\(SVGDocument.escape(string))</text>")
    }

    public mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String = "#444", width: Double = 1, dash: String? = nil) {
        let d = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
        elements.append("<line x1=\"\(SVGDocument.n(x1))\" y1=\"\(SVGDocument.n(y1))\" x2=\"\(SVGDocument.n(x2))\" y2=\"\(SVGDocument.n(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(SVGDocument.n(width))\"\(d)/>")
    }

    public mutating func polyline(_ points: [(Double, Double)], stroke: String, width: Double = 1.5, dash: String? = nil) {
        guard !points.isEmpty else { return }
        let d = dash.map { " stroke-dasharray=\"\($0)\"" } ?? ""
        let p = points.map { "\(SVGDocument.n($0.0)),\(SVGDocument.n($0.1))" }.joined(separator: " ")
        elements.append("<polyline points=\"\(p)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(SVGDocument.n(width))\"\(d)/>")
    }

    public mutating func circle(_ x: Double, _ y: Double, r: Double, fill: String, title: String? = nil) {
        let t = title.map { "<title>\(SVGDocument.escape($0))</title>" } ?? ""
        elements.append("<circle cx=\"\(SVGDocument.n(x))\" cy=\"\(SVGDocument.n(y))\" r=\"\(SVGDocument.n(r))\" fill=\"\(fill)\">\(t)</circle>")
    }

    /// The document, standalone (with the XML namespace) and scalable (viewBox).
    public var svg: String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(SVGDocument.n(width))\" height=\"\(SVGDocument.n(height))\" viewBox=\"0 0 \(SVGDocument.n(width)) \(SVGDocument.n(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + elements.joined(separator: "\n") + "\n</svg>\n"
    }
}

/// The few charts traces and tuning draw: heatmaps, bar charts, line charts.
public enum Charts {
    /// Viridis-like sequential colours, 0 → dark purple, 1 → yellow.
    public static func color(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2)
        let f = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        func c(_ u: Double, _ v: Double) -> Int { Int((u + (v - u) * f).rounded()) }
        return String(format: "#%02x%02x%02x", c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
    }

    /// Distinct colours for line series.
    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    /// A matrix as coloured cells, scaled to its largest value; each cell's tooltip gives its value.
    public static func heatmap(title: String, matrix: [[Double]], rowLabels: [String], columnLabels: [String], xLabel: String, yLabel: String,
                               format: (Double) -> String) -> String {
        let rows = matrix.count, cols = matrix.first?.count ?? 0
        let cell = min(28, max(4, 560 / Double(max(cols, 1))))
        let cellH = min(28, max(4, 400 / Double(max(rows, 1))))
        let left = 70.0, top = 40.0
        let w = left + cell * Double(cols) + 90, h = top + cellH * Double(rows) + 50
        var svg = SVGDocument(width: max(w, 360), height: h)
        svg.text(left, 20, title, size: 13, bold: true)
        let maxValue = matrix.joined().max() ?? 0
        for (r, row) in matrix.enumerated() {
            for (c, v) in row.enumerated() {
                svg.rect(left + Double(c) * cell, top + Double(r) * cellH, cell, cellH, fill: color(maxValue > 0 ? v / maxValue : 0),
                         title: "\(rowLabels[safe: r] ?? "\(r)") × \(columnLabels[safe: c] ?? "\(c)"): \(format(v))")
            }
        }
        let labelEvery = max(1, Int((12 / cell).rounded(.up)))
        for c in stride(from: 0, to: cols, by: labelEvery) {
            svg.text(left + (Double(c) + 0.5) * cell, top + cellH * Double(rows) + 12, columnLabels[safe: c] ?? "", size: 9, anchor: .middle)
        }
        let rowEvery = max(1, Int((11 / cellH).rounded(.up)))
        for r in stride(from: 0, to: rows, by: rowEvery) {
            svg.text(left - 4, top + (Double(r) + 0.5) * cellH + 3, rowLabels[safe: r] ?? "", size: 9, anchor: .end)
        }
        svg.text(left + cell * Double(cols) / 2, h - 12, xLabel, size: 11, anchor: .middle)
        svg.text(16, top + cellH * Double(rows) / 2, yLabel, size: 11, anchor: .middle, rotate: -90)
        // Colour scale.
        let sx = left + cell * Double(cols) + 20
        for i in 0..<20 {
            svg.rect(sx, top + Double(19 - i) * 8, 12, 8, fill: color(Double(i) / 19))
        }
        svg.text(sx + 16, top + 8, format(maxValue), size: 9)
        svg.text(sx + 16, top + 160, format(0), size: 9)
        return svg.svg
    }

    /// Vertical bars with their values on top.
    public static func bars(title: String, labels: [String], values: [Double], xLabel: String, yLabel: String, format: (Double) -> String) -> String {
        let left = 60.0, top = 40.0, plotH = 240.0
        let bar = min(40, max(8, 600 / Double(max(labels.count, 1))))
        let w = left + bar * Double(labels.count) + 30
        var svg = SVGDocument(width: max(w, 360), height: top + plotH + 70)
        svg.text(left, 20, title, size: 13, bold: true)
        let maxValue = max(values.max() ?? 0, 1e-12)
        svg.line(left, top + plotH, left + bar * Double(labels.count), top + plotH)
        for (i, v) in values.enumerated() {
            let h = plotH * v / maxValue
            let x = left + Double(i) * bar
            svg.rect(x + 1, top + plotH - h, bar - 2, h, fill: palette[0], title: "\(labels[i]): \(format(v))")
            if bar >= 18 { svg.text(x + bar / 2, top + plotH - h - 3, format(v), size: 8, anchor: .middle) }
            svg.text(x + bar / 2, top + plotH + 12, labels[i], size: 9, anchor: .end, rotate: -40)
        }
        svg.text(left + bar * Double(labels.count) / 2, top + plotH + 62, xLabel, size: 11, anchor: .middle)
        svg.text(16, top + plotH / 2, yLabel, size: 11, anchor: .middle, rotate: -90)
        return svg.svg
    }

    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public var dashed: Bool
        public init(name: String, points: [(x: Double, y: Double)], color: String, dashed: Bool = false) {
            self.name = name
            self.points = points
            self.color = color
            self.dashed = dashed
        }
    }

    /// Lines over a shared x axis, with a legend; `markers` draw labelled vertical lines.
    public static func lines(title: String, series: [Series], xLabel: String, yLabel: String, yRange: ClosedRange<Double>? = nil,
                             markers: [(x: Double, label: String)] = [], width: Double = 640, height: Double = 300,
                             xFormat: (Double) -> String = { SVGDocument.n($0) }, yFormat: (Double) -> String = { SVGDocument.n($0) }) -> String {
        let left = 64.0, right = 170.0, top = 36.0, bottom = 46.0
        let plotW = width - left - right, plotH = height - top - bottom
        var svg = SVGDocument(width: width, height: height)
        svg.text(left, 20, title, size: 13, bold: true)
        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { $0.points.map(\.y) }
        let x0 = xs.min() ?? 0, x1 = max(xs.max() ?? 1, x0 + 1e-9)
        let y0 = yRange?.lowerBound ?? min(0, ys.min() ?? 0)
        let y1 = yRange?.upperBound ?? max((ys.max() ?? 1) * 1.05, y0 + 1e-9)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - y0) / (y1 - y0) * plotH }
        svg.line(left, top + plotH, left + plotW, top + plotH)
        svg.line(left, top, left, top + plotH)
        for i in 0...4 {
            let y = y0 + (y1 - y0) * Double(i) / 4
            svg.line(left, py(y), left + plotW, py(y), stroke: "#ddd", width: 0.5)
            svg.text(left - 4, py(y) + 3, yFormat(y), size: 9, anchor: .end)
            let x = x0 + (x1 - x0) * Double(i) / 4
            svg.text(px(x), top + plotH + 13, xFormat(x), size: 9, anchor: .middle)
        }
        for (i, m) in markers.enumerated() {
            svg.line(px(m.x), top, px(m.x), top + plotH, stroke: "#888", width: 1, dash: "2,3")
            svg.text(px(m.x) + 3, top + 10 + 11 * Double(i), m.label, size: 9, fill: "#555")
        }
        for (i, s) in series.enumerated() {
            svg.polyline(s.points.map { (px($0.x), py($0.y)) }, stroke: s.color, dash: s.dashed ? "5,3" : nil)
            let ly = top + 6 + Double(i) * 15
            svg.line(left + plotW + 12, ly, left + plotW + 32, ly, stroke: s.color, width: 2, dash: s.dashed ? "5,3" : nil)
            svg.text(left + plotW + 36, ly + 3, s.name, size: 10)
        }
        svg.text(left + plotW / 2, height - 10, xLabel, size: 11, anchor: .middle)
        svg.text(16, top + plotH / 2, yLabel, size: 11, anchor: .middle, rotate: -90)
        return svg.svg
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
