import Foundation
import ModelFormats

/// Which experts the next layers will want, guessed while the current layer computes, so the
/// store can load them in time (docs/design.md §5: EdgeMoE's path statistics, Mixtral-offloading
/// and Fate's gate lookahead).
public enum PredictorKind: String, CaseIterable, Sendable, Codable {
    /// No prefetching.
    case none
    /// Apply layer l+d's gate to layer l's hidden state.
    case lookahead
    /// EdgeMoE: P(expert at l+1 | experts at l and l−1), learned by `moe calibrate`.
    case path
    /// Lookahead probabilities plus path statistics.
    case hybrid
    /// Lookahead (hybrid when path statistics exist), on only while a layer's measured compute
    /// outlasts the reads of its likely misses; beyond the top-k only uncertain candidates, and
    /// no more bytes per layer than the disk's measured headroom (docs/design.md §5).
    case auto
}

/// Expert-to-expert statistics of one model on a calibration text (`moe calibrate`).
///
/// `next[l][e][f]`: how often expert f was chosen at layer l+1 for a token that chose e at
/// layer l; `skip[l][e][f]`: the same from layer l−1 to l+1; `frequency[l][e]`: how often e was
/// chosen at l. Layers are MoE layer indices in model order (dense layers are skipped).
public struct TransitionTable: Codable, Sendable, Equatable {
    public var format = "swiftmoe-calibration"
    public var version = 1
    public var layers: [Int]
    public var expertCount: Int
    public var tokens: Int
    public var frequency: [[Int]]
    public var next: [[[Int]]]
    public var skip: [[[Int]]]

    public init(layers: [Int], expertCount: Int) {
        self.layers = layers
        self.expertCount = expertCount
        tokens = 0
        frequency = Array(repeating: Array(repeating: 0, count: expertCount), count: layers.count)
        next = Array(repeating: Array(repeating: Array(repeating: 0, count: expertCount), count: expertCount), count: layers.count)
        skip = next
    }

    /// Adds one token's route: `chosen[i]` = experts of MoE layer `layers[i]`.
    public mutating func record(_ chosen: [[Int]]) {
        guard chosen.count == layers.count else { return }
        tokens += 1
        for (i, set) in chosen.enumerated() {
            for e in set where e >= 0 && e < expertCount { frequency[i][e] += 1 }
            if i + 1 < chosen.count {
                for e in set where e >= 0 && e < expertCount { for f in chosen[i + 1] where f >= 0 && f < expertCount { next[i][e][f] += 1 } }
            }
            if i + 2 < chosen.count {
                for e in set where e >= 0 && e < expertCount { for f in chosen[i + 2] where f >= 0 && f < expertCount { skip[i][e][f] += 1 } }
            }
        }
    }

    public func write(to path: String) throws {
        try json().write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// The table as one JSON object with sorted keys (what `JSONEncoder` with `.sortedKeys`
    /// writes), plus `extra` members given as encoded JSON values, merged in key order. The
    /// transition counts (layers × experts² × 2 numbers: 1.6 million for 48 layers of 128
    /// experts) are written straight into the output: an encoder's value tree for them, or a
    /// `JSONSerialization` object graph, would take several times the file's size in memory,
    /// more than a `--memory` budget leaves (`moe calibrate` saves every few seconds).
    public func json(merging extra: [String: Data] = [:]) throws -> Data {
        var out = Data()
        try writeJSON(merging: extra.mapValues { value in { sink in try sink(value) } }, to: { out.append($0) })
        return out
    }

    /// Where ``writeJSON(merging:to:)`` sends the file, piece by piece.
    public typealias JSONSink = (Data) throws -> Void

    /// ``json(merging:)`` written to `sink` in pieces of at most one layer's transition counts,
    /// `extra` members written by their own writers: the file never sits whole in memory.
    public func writeJSON(merging extra: [String: (JSONSink) throws -> Void], to sink: JSONSink) throws {
        let encoder = JSONEncoder()
        var members = extra
        func value(_ data: Data) -> (JSONSink) throws -> Void { { try $0(data) } }
        func tables(_ tables: [[[Int]]]) -> (JSONSink) throws -> Void {
            { sink in
                try sink(Data("[".utf8))
                for (i, rows) in tables.enumerated() {
                    var out = Data(i > 0 ? ",".utf8 : "".utf8)
                    out.reserveCapacity(rows.reduce(2) { $0 + 2 + 4 * $1.count })
                    Self.append(rows, to: &out)
                    try sink(out)
                }
                try sink(Data("]".utf8))
            }
        }
        members["expertCount"] = value(Data(String(expertCount).utf8))
        members["format"] = value(try encoder.encode(format))
        members["frequency"] = value(Self.json(frequency))
        var layerList = Data()
        Self.append(row: layers, to: &layerList)
        members["layers"] = value(layerList)
        members["next"] = tables(next)
        members["skip"] = tables(skip)
        members["tokens"] = value(Data(String(tokens).utf8))
        members["version"] = value(Data(String(version).utf8))
        try sink(Data("{".utf8))
        for (i, key) in members.keys.sorted().enumerated() {
            var name = Data(i > 0 ? ",".utf8 : "".utf8)
            name.append(try encoder.encode(key))
            name.append(UInt8(ascii: ":"))
            try sink(name)
            try members[key]?(sink)
        }
        try sink(Data("}".utf8))
    }

    private static func json(_ rows: [[Int]]) -> Data {
        var out = Data()
        out.reserveCapacity(rows.reduce(2) { $0 + 2 + 4 * $1.count })
        append(rows, to: &out)
        return out
    }

    private static func append(_ rows: [[Int]], to out: inout Data) {
        out.append(UInt8(ascii: "["))
        for (i, row) in rows.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            append(row: row, to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    private static func append(row: [Int], to out: inout Data) {
        out.append(UInt8(ascii: "["))
        for (j, v) in row.enumerated() {
            if j > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: String(v).utf8)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// Reads the routing statistics of a calibration file, in pieces (``read(_:path:other:)``);
    /// the file's other members are checked as JSON and skipped.
    public static func load(path: String) throws -> TransitionTable {
        let reader: JSONPullReader
        do { reader = try JSONPullReader(path: path) } catch {
            throw PredictorError.invalidCalibration(path: path, reason: "cannot read the file")
        }
        return try read(reader, path: path) { _ in try reader.skip() }
    }

    /// Reads the calibration file's top-level object from `reader`, keeping the routing members
    /// and passing every other key to `other`, which must read its value; then checks the
    /// table as ``decode(_:path:)`` does. Memory: the table plus the reader's buffer (the
    /// tables are built row by row; no row may be longer than `expertCount` when that came first,
    /// as the writer's sorted keys put it).
    public static func read(_ reader: JSONPullReader, path: String, other: (String) throws -> Void) throws -> TransitionTable {
        var format: String?, version: Int?, layers: [Int]?, expertCount: Int?, tokens: Int?
        var frequency: [[Int]]?, next: [[[Int]]]?, skip: [[[Int]]]?
        func row() throws -> [Int] {
            var out: [Int] = []
            if let expertCount, expertCount > 0, expertCount <= 1 << 12 { out.reserveCapacity(expertCount) }
            try reader.array { i in
                if let expertCount, i >= expertCount { throw reader.fail("a row longer than expertCount (\(expertCount))") }
                out.append(try reader.int())
            }
            return out
        }
        /// Rows, at most `limit` of them when it is known (`name` for the message).
        func rows(limit: Int?, _ name: String) throws -> [[Int]] {
            var out: [[Int]] = []
            try reader.array { i in
                if let limit, i >= limit { throw reader.fail("more rows than \(name) (\(limit))") }
                out.append(try row())
            }
            return out
        }
        func tables() throws -> [[[Int]]] {
            var out: [[[Int]]] = []
            try reader.array { i in
                if let layers, i >= layers.count { throw reader.fail("more tables than layers (\(layers.count))") }
                out.append(try rows(limit: expertCount, "expertCount"))
            }
            return out
        }
        do {
            try reader.object { key in
                switch key {
                case "format": format = try reader.string(limit: 256)
                case "version": version = try reader.int()
                case "layers": layers = try reader.ints()
                case "expertCount": expertCount = try reader.int()
                case "tokens": tokens = try reader.int()
                case "frequency": frequency = try rows(limit: layers?.count, "layers")
                case "next": next = try tables()
                case "skip": skip = try tables()
                default: try other(key)
                }
            }
            try reader.end()
        } catch let failure as JSONPullReader.Failure {
            throw PredictorError.invalidCalibration(path: path, reason: "not a calibration file (\(ModelFormatError.shown(failure.description)))")
        }
        let missing = [("expertCount", expertCount == nil), ("format", format == nil), ("frequency", frequency == nil), ("layers", layers == nil),
                       ("next", next == nil), ("skip", skip == nil), ("tokens", tokens == nil), ("version", version == nil)]
            .filter(\.1).map(\.0)
        guard missing.isEmpty, let format, let version, let layers, let expertCount, let tokens, let frequency, let next, let skip else {
            throw PredictorError.invalidCalibration(path: path, reason: "not a calibration file (missing \(missing.joined(separator: ", ")))")
        }
        var table = TransitionTable(format: format, version: version, layers: layers, expertCount: expertCount, tokens: tokens)
        table.frequency = frequency
        table.next = next
        table.skip = skip
        try table.validate(path: path)
        return table
    }

    /// A table with no counts allocated (``read(_:path:other:)`` fills them).
    private init(format: String, version: Int, layers: [Int], expertCount: Int, tokens: Int) {
        self.format = format
        self.version = version
        self.layers = layers
        self.expertCount = expertCount
        self.tokens = tokens
        frequency = []
        next = []
        skip = []
    }

    /// Decodes and validates the table from bytes in memory (a store's calibration section; `path` for
    /// messages), with the same pull reader as a file: no object graph of the JSON.
    public static func decode(_ data: Data, path: String) throws -> TransitionTable {
        let reader = JSONPullReader(bytes: [UInt8](data))
        return try read(reader, path: path) { _ in try reader.skip() }
    }

    /// The checks every loaded table passes: format, version and the tables' shapes.
    func validate(path: String) throws {
        let e = expertCount, l = layers.count
        guard format == "swiftmoe-calibration", version == 1, e > 0, e <= 1 << 12, l > 0,
              frequency.count == l, next.count == l, skip.count == l,
              frequency.allSatisfy({ $0.count == e }),
              next.allSatisfy({ $0.count == e && $0.allSatisfy { $0.count == e } }),
              skip.allSatisfy({ $0.count == e && $0.allSatisfy { $0.count == e } }) else {
            throw PredictorError.invalidCalibration(path: path, reason: "tables do not match \(l) layers × \(e) experts")
        }
    }

    /// Index of model layer `layer` among the MoE layers, if it is one.
    public func index(ofLayer layer: Int) -> Int? { layers.firstIndex(of: layer) }
}

public enum PredictorError: Error, CustomStringConvertible, Equatable {
    case invalidCalibration(path: String, reason: String)
    case needsCalibration(PredictorKind)
    case mismatch(path: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidCalibration(path, reason): return "\(path): invalid calibration: \(reason)"
        case let .needsCalibration(kind): return "--prefetch \(kind.rawValue) needs path statistics: run moe calibrate MODEL --text FILE first (or pass --calibration FILE)"
        case let .mismatch(path, reason): return "\(path): calibration is for another model: \(reason)"
        }
    }
}

/// Scores experts of the layers ahead and picks the likeliest.
public final class ExpertPredictor: Sendable {
    public let kind: PredictorKind
    /// How guesses are made: ``kind``, except that `auto` guesses with lookahead, or hybrid
    /// when there are path statistics.
    public let guessing: PredictorKind
    /// Layers ahead to predict (1 = the next MoE layer only).
    public let depth: Int
    /// Experts to predict per layer (top-k plus a margin).
    public let width: Int
    public let table: TransitionTable?

    public init(kind: PredictorKind, depth: Int, width: Int, table: TransitionTable?) throws {
        if (kind == .path || kind == .hybrid) && table == nil { throw PredictorError.needsCalibration(kind) }
        self.kind = kind
        guessing = kind == .auto ? (table == nil ? .lookahead : .hybrid) : kind
        self.depth = max(1, depth)
        self.width = max(1, width)
        self.table = table
    }

    /// Predicted experts of MoE layer `target` (a model layer index), best first.
    ///
    /// - Parameters:
    ///   - current: experts chosen at `currentLayer`; `previous`: at the MoE layer before it.
    ///   - lookahead: `target`'s gate probabilities on the current hidden state, if computed.
    public func predict(target: Int, currentLayer: Int, current: [Int], previous: [Int]?, lookahead: [Float]?) -> [Int] {
        ranked(target: target, currentLayer: currentLayer, current: current, previous: previous, lookahead: lookahead).experts
    }

    /// ``predict(target:currentLayer:current:previous:lookahead:)`` with every expert's score
    /// (a distribution over the target's experts; empty when there is nothing to go on).
    public func ranked(target: Int, currentLayer: Int, current: [Int], previous: [Int]?, lookahead: [Float]?) -> (experts: [Int], scores: [Double]) {
        var scores: [Double]
        switch guessing {
        case .none, .auto:
            return ([], [])
        case .lookahead:
            guard let lookahead else { return ([], []) }
            scores = lookahead.map(Double.init)
        case .path, .hybrid:
            scores = pathScores(target: target, currentLayer: currentLayer, current: current, previous: previous)
            if guessing == .hybrid, let lookahead {
                // Both are distributions over the target's experts; lookahead sees this token's
                // own hidden state, so it gets the larger weight.
                for e in scores.indices where e < lookahead.count { scores[e] = 0.35 * scores[e] + 0.65 * Double(lookahead[e]) }
            }
        }
        let experts = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(width).map { $0 }
        return (experts, scores)
    }

    /// EdgeMoE's conditional statistics as a distribution over the target layer's experts.
    func pathScores(target: Int, currentLayer: Int, current: [Int], previous: [Int]?) -> [Double] {
        guard let table, let t = table.index(ofLayer: target), let c = table.index(ofLayer: currentLayer) else {
            return []
        }
        let e = table.expertCount
        var scores = [Double](repeating: 0, count: e)
        func add(_ counts: [[Int]], _ from: [Int], weight: Double) {
            for source in from where source >= 0 && source < e {
                let row = counts[source]
                let total = Double(row.reduce(0, +))
                guard total > 0 else { continue }
                for f in 0..<e { scores[f] += weight * Double(row[f]) / total }
            }
        }
        if t == c + 1 {
            add(table.next[c], current, weight: 1)
            if let previous, c >= 1 { add(table.skip[c - 1], previous, weight: 0.5) }
        } else if t == c + 2 {
            add(table.skip[c], current, weight: 1)
        }
        let sum = scores.reduce(0, +)
        if sum > 0 {
            for f in 0..<e { scores[f] /= sum }
        } else {
            // No statistics for this pair: fall back to the target layer's frequencies.
            let freq = table.frequency[t]
            let total = Double(max(freq.reduce(0, +), 1))
            scores = freq.map { Double($0) / total }
        }
        return scores
    }
}

/// Precision and recall of predictions against what the router then chose, per layer.
public struct PredictionStats: Codable, Sendable, Equatable {
    public var predicted: [Int: Int] = [:]
    public var correct: [Int: Int] = [:]
    public var actual: [Int: Int] = [:]

    public init() {}

    public mutating func record(layer: Int, predicted p: [Int], actual a: [Int]) {
        predicted[layer, default: 0] += p.count
        actual[layer, default: 0] += a.count
        correct[layer, default: 0] += Set(p).intersection(a).count
    }

    public func precision(layer: Int? = nil) -> Double {
        let p = layer.map { predicted[$0] ?? 0 } ?? predicted.values.reduce(0, +)
        let c = layer.map { correct[$0] ?? 0 } ?? correct.values.reduce(0, +)
        return p == 0 ? 0 : Double(c) / Double(p)
    }

    public func recall(layer: Int? = nil) -> Double {
        let a = layer.map { actual[$0] ?? 0 } ?? actual.values.reduce(0, +)
        let c = layer.map { correct[$0] ?? 0 } ?? correct.values.reduce(0, +)
        return a == 0 ? 0 : Double(c) / Double(a)
    }
}
