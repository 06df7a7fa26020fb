import Foundation
import ModelFormats
import Router

/// The `activations` object of the calibration file (docs/quality.md, "Calibration file"):
/// sizes and counts as JSON numbers, the four per-column arrays as base64 of little-endian
/// float32, and an XXH64 of those bytes so a damaged or edited file is refused.
extension ActivationStatistics {
    struct Stored: Codable {
        var format: String
        var version: Int
        var settings: Settings
        var layers: [Int]
        var expertCount: Int
        var hiddenSize: Int
        var ffnSize: Int
        var tokens: Int
        var uses: [[Int]]
        var routerWeightSquares: [[Float]]
        var encoding: String
        var inputSquares: String
        var hiddenSquares: String
        var upGain: String
        var gateGain: String
        var checksum: String
    }

    static let encoding = "float32-le-base64"

    static func bytes<C: Collection<Float>>(_ values: C) -> Data {
        var data = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }

    static func floats(_ data: Data) -> [Float] {
        data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    static func checksum(_ parts: [Data]) -> String {
        var all = Data()
        for p in parts { all.append(p) }
        return String(all.withUnsafeBytes { XXH64.hash($0) }, radix: 16)
    }

    /// Floats per piece when written: 48 KiB, a multiple of 3 bytes, so base64 pieces join
    /// into the base64 of the whole.
    static let pieceFloats = 3 * 4096

    /// `values`' little-endian bytes, one piece at a time.
    static func forEachPiece(_ values: [Float], _ body: (Data) throws -> Void) rethrows {
        var start = 0
        while start < values.count {
            let end = min(start + pieceFloats, values.count)
            try body(bytes(values[start..<end]))
            start = end
        }
    }

    /// The JSON of ``stored`` (`JSONEncoder`, sorted keys), written to `sink` in pieces: the
    /// four arrays, most of the file (experts × (hidden + 3 × FFN) floats), are hashed and
    /// base64-encoded a piece at a time, never copied whole.
    func writeStored(to sink: TransitionTable.JSONSink) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var hasher = XXH64.Hasher()
        for values in [inputSquares, hiddenSquares, upGain, gateGain] {
            ActivationStatistics.forEachPiece(values) { piece in piece.withUnsafeBytes { hasher.update($0) } }
        }
        var first = true
        func key(_ name: String) throws {
            try sink(Data(((first ? "{" : ",") + "\"\(name)\":").utf8))
            first = false
        }
        func member(_ name: String, _ value: some Encodable) throws {
            try key(name)
            try sink(try encoder.encode(value))
        }
        func base64(_ name: String, _ values: [Float]) throws {
            try key(name)
            try sink(Data("\"".utf8))
            // As JSONEncoder writes it: "/" escaped as "\/".
            try ActivationStatistics.forEachPiece(values) { piece in
                var escaped = Data()
                for byte in piece.base64EncodedData() {
                    if byte == UInt8(ascii: "/") { escaped.append(UInt8(ascii: "\\")) }
                    escaped.append(byte)
                }
                try sink(escaped)
            }
            try sink(Data("\"".utf8))
        }
        try member("checksum", String(hasher.finalize(), radix: 16))
        try member("encoding", ActivationStatistics.encoding)
        try member("expertCount", expertCount)
        try member("ffnSize", ffnSize)
        try member("format", ActivationStatistics.format)
        try base64("gateGain", gateGain)
        try member("hiddenSize", hiddenSize)
        try base64("hiddenSquares", hiddenSquares)
        try base64("inputSquares", inputSquares)
        try member("layers", layers)
        try member("routerWeightSquares", routerWeightSquares)
        try member("settings", settings)
        try member("tokens", tokens)
        try base64("upGain", upGain)
        try member("uses", uses)
        try member("version", ActivationStatistics.version)
        try sink(Data("}".utf8))
    }

    /// The stored object as one value (tests compare ``writeStored(to:)`` with its `JSONEncoder` bytes).
    var stored: Stored {
        let parts = [inputSquares, hiddenSquares, upGain, gateGain].map(ActivationStatistics.bytes)
        return Stored(format: ActivationStatistics.format, version: ActivationStatistics.version, settings: settings, layers: layers,
                      expertCount: expertCount, hiddenSize: hiddenSize, ffnSize: ffnSize, tokens: tokens, uses: uses,
                      routerWeightSquares: routerWeightSquares, encoding: ActivationStatistics.encoding,
                      inputSquares: parts[0].base64EncodedString(), hiddenSquares: parts[1].base64EncodedString(),
                      upGain: parts[2].base64EncodedString(), gateGain: parts[3].base64EncodedString(),
                      checksum: ActivationStatistics.checksum(parts))
    }

    /// Checks every field of a stored object against itself and the routing table's shape.
    init(stored s: Stored, routing: TransitionTable, path: String) throws {
        func fail(_ reason: String) -> PredictorError { .invalidCalibration(path: path, reason: "activations: " + reason) }
        guard s.format == ActivationStatistics.format, s.version == ActivationStatistics.version, s.encoding == ActivationStatistics.encoding else {
            throw fail("format \(ModelFormatError.shown(s.format)) version \(s.version) is not \(ActivationStatistics.format) version \(ActivationStatistics.version)")
        }
        guard s.layers == routing.layers, s.expertCount == routing.expertCount else {
            throw fail("\(s.layers.count) layers × \(s.expertCount) experts do not match the routing table")
        }
        let limit = 1 << 20
        guard (1...limit).contains(s.hiddenSize), (1...limit).contains(s.ffnSize), s.tokens >= 0, s.settings.totalTokens >= s.tokens,
              s.settings.context >= 1 else {
            throw fail("sizes out of range (hidden \(s.hiddenSize), FFN \(s.ffnSize), tokens \(s.tokens) of \(s.settings.totalTokens))")
        }
        guard s.uses.count == s.layers.count, s.uses.allSatisfy({ $0.count == s.expertCount && $0.allSatisfy { $0 >= 0 } }),
              s.routerWeightSquares.count == s.layers.count,
              s.routerWeightSquares.allSatisfy({ $0.count == s.expertCount && $0.allSatisfy { $0.isFinite && $0 >= 0 } }) else {
            throw fail("uses or router weights do not match \(s.layers.count) layers × \(s.expertCount) experts")
        }
        var parts: [Data] = []
        let experts = s.layers.count * s.expertCount
        for (name, text, width) in [("inputSquares", s.inputSquares, s.hiddenSize), ("hiddenSquares", s.hiddenSquares, s.ffnSize),
                                    ("upGain", s.upGain, s.ffnSize), ("gateGain", s.gateGain, s.ffnSize)] {
            guard let data = Data(base64Encoded: text), data.count == experts * width * 4 else {
                throw fail("\(name) is not base64 of \(experts) × \(width) float32 values")
            }
            parts.append(data)
        }
        guard ActivationStatistics.checksum(parts) == s.checksum else { throw fail("checksum does not match the data (damaged or edited)") }
        let arrays = parts.map(ActivationStatistics.floats)
        guard arrays.allSatisfy({ $0.allSatisfy { $0.isFinite && $0 >= 0 } }) else { throw fail("negative or non-finite sums") }
        self.init(settings: s.settings, layers: s.layers, expertCount: s.expertCount, hiddenSize: s.hiddenSize, ffnSize: s.ffnSize)
        tokens = s.tokens
        uses = s.uses
        routerWeightSquares = s.routerWeightSquares
        inputSquares = arrays[0]
        hiddenSquares = arrays[1]
        upGain = arrays[2]
        gateGain = arrays[3]
    }
}

extension ActivationStatistics.Stored {
    /// The stored object from `reader` (the value of a calibration file's `activations`
    /// member), each member as it comes; `settings` through `JSONDecoder`.
    static func read(_ reader: JSONPullReader) throws -> ActivationStatistics.Stored {
        var format: String?, version: Int?, settings: ActivationStatistics.Settings?, layers: [Int]?, expertCount: Int?
        var hiddenSize: Int?, ffnSize: Int?, tokens: Int?, uses: [[Int]]?, routerWeightSquares: [[Float]]?
        var encoding: String?, inputSquares: String?, hiddenSquares: String?, upGain: String?, gateGain: String?, checksum: String?
        // Base64 of float32 statistics: no longer than the file that holds it.
        let long = Int(Int32.max)
        try reader.object { key in
            switch key {
            case "format": format = try reader.string(limit: 256)
            case "version": version = try reader.int()
            case "settings": settings = try JSONDecoder().decode(ActivationStatistics.Settings.self, from: try reader.raw(limit: 1 << 20))
            case "layers": layers = try reader.ints()
            case "expertCount": expertCount = try reader.int()
            case "hiddenSize": hiddenSize = try reader.int()
            case "ffnSize": ffnSize = try reader.int()
            case "tokens": tokens = try reader.int()
            case "uses": uses = try reader.intRows()
            case "routerWeightSquares":
                var rows: [[Float]] = []
                try reader.array { _ in rows.append(try reader.floats()) }
                routerWeightSquares = rows
            case "encoding": encoding = try reader.string(limit: 256)
            case "inputSquares": inputSquares = try reader.string(limit: long)
            case "hiddenSquares": hiddenSquares = try reader.string(limit: long)
            case "upGain": upGain = try reader.string(limit: long)
            case "gateGain": gateGain = try reader.string(limit: long)
            case "checksum": checksum = try reader.string(limit: 256)
            default: try reader.skip()
            }
        }
        func missing(_ key: String) -> JSONPullReader.Failure { reader.fail("the activation statistics have no \(key)") }
        guard let format else { throw missing("format") }
        guard let version else { throw missing("version") }
        guard let settings else { throw missing("settings") }
        guard let layers else { throw missing("layers") }
        guard let expertCount else { throw missing("expertCount") }
        guard let hiddenSize else { throw missing("hiddenSize") }
        guard let ffnSize else { throw missing("ffnSize") }
        guard let tokens else { throw missing("tokens") }
        guard let uses else { throw missing("uses") }
        guard let routerWeightSquares else { throw missing("routerWeightSquares") }
        guard let encoding else { throw missing("encoding") }
        guard let inputSquares else { throw missing("inputSquares") }
        guard let hiddenSquares else { throw missing("hiddenSquares") }
        guard let upGain else { throw missing("upGain") }
        guard let gateGain else { throw missing("gateGain") }
        guard let checksum else { throw missing("checksum") }
        return ActivationStatistics.Stored(format: format, version: version, settings: settings, layers: layers, expertCount: expertCount,
                                           hiddenSize: hiddenSize, ffnSize: ffnSize, tokens: tokens, uses: uses,
                                           routerWeightSquares: routerWeightSquares, encoding: encoding, inputSquares: inputSquares,
                                           hiddenSquares: hiddenSquares, upGain: upGain, gateGain: gateGain, checksum: checksum)
    }
}
