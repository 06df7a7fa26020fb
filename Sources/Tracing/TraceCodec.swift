import ExpertStore
import Foundation
import ModelFormats

/// The binary trace file (`.trace`), byte by byte in docs/trace-format.md.
///
/// ### Layout
///
///     0      8  magic "MOETRACE"
///     8      4  version (u32 LE) = 1
///     12     4  header length H (u32 LE)
///     16     H  header: JSON (TraceHeader)
///     16+H   8  body length B (u64 LE)
///     24+H   B  body: unsigned LEB128 varints, u8 flags, f32 LE weights
///     24+H+B 8  XXH64 (seed 0) of header ‖ body (u64 LE)
///
/// Varints keep a decode step of a top-2 layer to about 50 bytes; the checksum catches damage,
/// and every count is checked against the bytes left before anything is allocated.
public enum TraceCodec {
    public static let magic = Array("MOETRACE".utf8)
    public static let version = 1
    /// Header JSON larger than this is refused (a real one is under 1 KB).
    static let maxHeader = 1 << 20

    // MARK: Encoding

    public static func encode(_ trace: Trace) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = Array(try encoder.encode(trace.header))
        var body = ByteWriter()
        body.varint(trace.steps.count)
        for step in trace.steps {
            body.byte(step.kind.rawValue)
            body.varint(step.position)
            body.varint(step.tokens.count)
            for t in step.tokens { body.varint(t) }
            body.varint(step.start)
            body.varint(step.end)
            body.varint(step.layers.count)
            for layer in step.layers {
                body.varint(layer.layer)
                body.varint(layer.attentionStart)
                body.varint(layer.ffnStart)
                body.varint(layer.ffnEnd)
                body.varint(layer.routes.count)
                for r in layer.routes {
                    body.varint(r.experts.count)
                    for e in r.experts { body.varint(e) }
                    for w in r.weights { body.float(w) }
                }
                body.varint(layer.accesses.count)
                for a in layer.accesses {
                    body.varint(a.expert)
                    body.byte(a.outcome.rawValue | (a.prefetched ? 4 : 0))
                    body.varint(a.time)
                    body.varint(a.stall)
                    body.varint(a.bytes)
                    body.varint(a.loadTime)
                }
                body.varint(layer.prefetches.count)
                for p in layer.prefetches {
                    body.keys(p.requested)
                    body.keys(p.queued)
                    body.varint(p.time)
                }
            }
        }
        body.varint(trace.loads.count)
        for l in trace.loads {
            body.varint(l.key.layer)
            body.varint(l.key.expert)
            body.byte((l.prefetch ? 1 : 0) | (l.failed ? 2 : 0))
            body.varint(l.thread)
            body.varint(l.start)
            body.varint(l.end)
            body.varint(l.bytes)
        }
        body.varint(trace.evictions.count)
        for e in trace.evictions {
            body.varint(e.key.layer)
            body.varint(e.key.expert)
            body.byte(e.unusedPrefetch ? 1 : 0)
            body.varint(e.time)
        }
        var out = ByteWriter()
        out.bytes += magic
        out.u32(UInt32(version))
        out.u32(UInt32(header.count))
        out.bytes += header
        out.u64(UInt64(body.bytes.count))
        out.bytes += body.bytes
        out.u64(XXH64.hash(header + body.bytes))
        return out.bytes
    }

    public static func write(_ trace: Trace, to path: String) throws {
        let bytes = try encode(trace)
        do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw TraceError.cannotRead(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    // MARK: Decoding

    /// Whether `bytes` start like a binary trace.
    public static func isBinary(_ bytes: [UInt8]) -> Bool { bytes.count >= 8 && Array(bytes[0..<8]) == magic }

    public static func decode(_ bytes: [UInt8], path: String) throws -> Trace {
        var r = TraceReader(bytes: bytes, path: path)
        guard isBinary(bytes) else { throw TraceError.notATrace(path: path) }
        r.offset = 8
        let version = Int(try r.u32("the version"))
        guard version == TraceCodec.version else { throw TraceError.unsupportedVersion(path: path, version: version) }
        let headerLength = Int(try r.u32("the header length"))
        guard headerLength <= maxHeader else { throw TraceError.invalid(path: path, reason: "header length \(headerLength) is implausible") }
        let headerStart = r.offset
        let headerBytes = try r.take(headerLength, "the header")
        let bodyLength = try r.u64("the body length")
        guard bodyLength <= UInt64(r.remaining) else { throw TraceError.truncated(path: path, offset: r.offset, what: "the body (\(bodyLength) bytes declared)") }
        let bodyStart = r.offset
        _ = try r.take(Int(bodyLength), "the body")
        let expected = try r.u64("the checksum")
        let found = XXH64.hash(Array(bytes[headerStart..<(headerStart + headerLength)]) + Array(bytes[bodyStart..<(bodyStart + Int(bodyLength))]))
        guard expected == found else { throw TraceError.checksumMismatch(path: path, expected: expected, found: found) }
        guard r.remaining == 0 else { throw TraceError.invalid(path: path, reason: "\(r.remaining) bytes after the checksum") }

        let header: TraceHeader
        do { header = try JSONDecoder().decode(TraceHeader.self, from: Data(headerBytes)) } catch {
            throw TraceError.invalid(path: path, reason: "the header is not valid JSON for a trace (\(ModelFormatError.shown(decoding: error)))")
        }
        var b = TraceReader(bytes: Array(bytes[bodyStart..<(bodyStart + Int(bodyLength))]), path: path, base: bodyStart)
        var trace = Trace(header: header)
        let stepCount = try b.count("the step count")
        trace.steps.reserveCapacity(stepCount)
        for s in 0..<stepCount {
            let what = "step \(s)"
            guard let kind = TraceStep.Kind(rawValue: try b.byte(what)) else { throw TraceError.invalid(path: path, reason: "\(what) has an unknown kind") }
            var step = TraceStep(kind: kind, position: try b.int(what), tokens: [])
            let tokenCount = try b.count(what)
            step.tokens = try (0..<tokenCount).map { _ in try b.int(what) }
            step.start = try b.varint(what)
            step.end = try b.varint(what)
            let layerCount = try b.count(what)
            for _ in 0..<layerCount {
                var layer = TraceLayer(layer: try b.int(what))
                let lw = "\(what) layer \(layer.layer)"
                layer.attentionStart = try b.varint(lw)
                layer.ffnStart = try b.varint(lw)
                layer.ffnEnd = try b.varint(lw)
                let routeCount = try b.count(lw)
                layer.routes.reserveCapacity(routeCount)
                for _ in 0..<routeCount {
                    let k = try b.count(lw)
                    let experts = try (0..<k).map { _ in try b.int(lw) }
                    let weights = try (0..<k).map { _ in try b.float(lw) }
                    layer.routes.append(TraceRoute(experts: experts, weights: weights))
                }
                let accessCount = try b.count(lw)
                for _ in 0..<accessCount {
                    let expert = try b.int(lw)
                    let flags = try b.byte(lw)
                    guard let outcome = TraceAccess.Outcome(rawValue: flags & 3), flags & ~7 == 0 else {
                        throw TraceError.invalid(path: path, reason: "\(lw): access flags \(flags) are unknown")
                    }
                    layer.accesses.append(TraceAccess(expert: expert, outcome: outcome, prefetched: flags & 4 != 0, time: try b.varint(lw),
                                                      stall: try b.varint(lw), bytes: try b.int(lw), loadTime: try b.varint(lw)))
                }
                let prefetchCount = try b.count(lw)
                for _ in 0..<prefetchCount {
                    layer.prefetches.append(TracePrefetch(requested: try b.keys(lw), queued: try b.keys(lw), time: try b.varint(lw)))
                }
                step.layers.append(layer)
            }
            trace.steps.append(step)
        }
        let loadCount = try b.count("the load count")
        for i in 0..<loadCount {
            let what = "load \(i)"
            let key = ExpertKey(layer: try b.int(what), expert: try b.int(what))
            let flags = try b.byte(what)
            trace.loads.append(TraceLoad(key: key, prefetch: flags & 1 != 0, thread: try b.int(what), start: try b.varint(what), end: try b.varint(what),
                                         bytes: try b.int(what), failed: flags & 2 != 0))
        }
        let evictionCount = try b.count("the eviction count")
        for i in 0..<evictionCount {
            let what = "eviction \(i)"
            let key = ExpertKey(layer: try b.int(what), expert: try b.int(what))
            let flags = try b.byte(what)
            trace.evictions.append(TraceEviction(key: key, unusedPrefetch: flags & 1 != 0, time: try b.varint(what)))
        }
        guard b.remaining == 0 else { throw TraceError.invalid(path: path, reason: "\(b.remaining) unread bytes at the end of the body") }
        try trace.validate(path: path)
        return trace
    }

    /// Reads a binary trace or its JSONL export (told apart by the first bytes).
    public static func read(path: String) throws -> Trace {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceError.cannotRead(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file")
        }
        let bytes = Array(data)
        if isBinary(bytes) { return try decode(bytes, path: path) }
        if bytes.first == UInt8(ascii: "{") { return try TraceJSONL.decode(data, path: path) }
        throw TraceError.notATrace(path: path)
    }
}

/// Little-endian output with LEB128 varints.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func byte(_ b: UInt8) { bytes.append(b) }
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    /// Negative values never occur in a valid trace; they are written as 0.
    mutating func varint(_ v: Int) { varint(UInt64(max(v, 0))) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func float(_ f: Float) { u32(f.bitPattern) }
    mutating func keys(_ keys: [ExpertKey]) {
        varint(keys.count)
        for k in keys {
            varint(k.layer)
            varint(k.expert)
        }
    }
}

/// Bounds-checked reads over untrusted trace bytes: every read throws instead of running past the end.
struct TraceReader {
    let bytes: [UInt8]
    let path: String
    /// Offset of `bytes` in the file, for messages.
    let base: Int
    var offset = 0

    init(bytes: [UInt8], path: String, base: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.base = base
    }

    var remaining: Int { bytes.count - offset }

    func truncated(_ what: String) -> TraceError { .truncated(path: path, offset: base + offset, what: what) }

    mutating func take(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw truncated(what) }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }
    mutating func byte(_ what: String) throws -> UInt8 {
        guard remaining >= 1 else { throw truncated(what) }
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u32(_ what: String) throws -> UInt32 {
        let s = try take(4, what)
        return s.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    mutating func u64(_ what: String) throws -> UInt64 {
        let s = try take(8, what)
        return s.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    mutating func float(_ what: String) throws -> Float { Float(bitPattern: try u32(what)) }
    mutating func varint(_ what: String) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte(what)
            guard shift < 64, !(shift == 63 && b > 1) else { throw TraceError.invalid(path: path, reason: "\(what): a number at offset \(base + offset) overflows 64 bits") }
            value |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }
    /// A non-negative Int (values past 2^53 are refused: no valid trace has them).
    mutating func int(_ what: String) throws -> Int {
        let v = try varint(what)
        guard v < 1 << 53 else { throw TraceError.invalid(path: path, reason: "\(what): value \(v) at offset \(base + offset) is implausible") }
        return Int(v)
    }
    /// An item count: each item takes at least one byte, so a count above the bytes left is damage.
    mutating func count(_ what: String) throws -> Int {
        let n = try int(what)
        guard n <= remaining else { throw TraceError.invalid(path: path, reason: "\(what): count \(n) at offset \(base + offset) exceeds the \(remaining) bytes left") }
        return n
    }
    mutating func keys(_ what: String) throws -> [ExpertKey] {
        let n = try count(what)
        return try (0..<n).map { _ in ExpertKey(layer: try int(what), expert: try int(what)) }
    }
}
