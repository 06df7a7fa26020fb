import ExpertStore
import Foundation

/// The JSONL form of a trace: one JSON object per line, lossless (``decode(_:path:)`` reads it
/// back), for `jq`, pandas and other tools. Line types, in order: `header`, then per step one
/// `step` line, its `layer` lines and their `access` lines; then `load` and `eviction` lines.
public enum TraceJSONL {
    struct Header: Codable { var type = "header"; var format = "swiftmoe-trace"; var version = TraceCodec.version; var header: TraceHeader }
    struct Step: Codable {
        var type = "step"
        var step: Int, kind: String, position: Int, tokens: [Int], start_ns: UInt64, end_ns: UInt64
    }
    struct Prefetch: Codable { var requested: [[Int]], queued: [[Int]], time_ns: UInt64 }
    struct Layer: Codable {
        var type = "layer"
        var step: Int, layer: Int, attention_start_ns: UInt64, ffn_start_ns: UInt64, ffn_end_ns: UInt64
        var routes: [TraceRoute]
        var prefetches: [Prefetch]
    }
    struct Access: Codable {
        var type = "access"
        var step: Int, layer: Int, expert: Int, outcome: String, prefetched: Bool, time_ns: UInt64, stall_ns: UInt64, bytes: Int, load_ns: UInt64
    }
    struct Load: Codable {
        var type = "load"
        var layer: Int, expert: Int, prefetch: Bool, thread: Int, start_ns: UInt64, end_ns: UInt64, bytes: Int, failed: Bool
    }
    struct Eviction: Codable {
        var type = "eviction"
        var layer: Int, expert: Int, unused_prefetch: Bool, time_ns: UInt64
    }
    struct Kind: Codable { var type: String }

    static let outcomeNames: [TraceAccess.Outcome: String] = [.hit: "hit", .miss: "miss", .late: "late"]

    public static func encode(_ trace: Trace) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = Data()
        func line<T: Encodable>(_ value: T) throws {
            out += try encoder.encode(value)
            out.append(0x0A)
        }
        func pairs(_ keys: [ExpertKey]) -> [[Int]] { keys.map { [$0.layer, $0.expert] } }
        try line(Header(header: trace.header))
        for (s, step) in trace.steps.enumerated() {
            try line(Step(step: s, kind: step.kind.name, position: step.position, tokens: step.tokens, start_ns: step.start, end_ns: step.end))
            for l in step.layers {
                try line(Layer(step: s, layer: l.layer, attention_start_ns: l.attentionStart, ffn_start_ns: l.ffnStart, ffn_end_ns: l.ffnEnd,
                               routes: l.routes, prefetches: l.prefetches.map { Prefetch(requested: pairs($0.requested), queued: pairs($0.queued), time_ns: $0.time) }))
                for a in l.accesses {
                    try line(Access(step: s, layer: l.layer, expert: a.expert, outcome: outcomeNames[a.outcome] ?? "hit", prefetched: a.prefetched,
                                    time_ns: a.time, stall_ns: a.stall, bytes: a.bytes, load_ns: a.loadTime))
                }
            }
        }
        for l in trace.loads {
            try line(Load(layer: l.key.layer, expert: l.key.expert, prefetch: l.prefetch, thread: l.thread, start_ns: l.start, end_ns: l.end, bytes: l.bytes, failed: l.failed))
        }
        for e in trace.evictions {
            try line(Eviction(layer: e.key.layer, expert: e.key.expert, unused_prefetch: e.unusedPrefetch, time_ns: e.time))
        }
        return out
    }

    public static func decode(_ data: Data, path: String) throws -> Trace {
        let decoder = JSONDecoder()
        var trace: Trace? = nil
        func bad(_ n: Int, _ reason: String) -> TraceError { .invalid(path: path, reason: "line \(n): \(reason)") }
        func keys(_ pairs: [[Int]], _ n: Int) throws -> [ExpertKey] {
            try pairs.map { p in
                guard p.count == 2 else { throw bad(n, "an expert is written [layer, expert]") }
                return ExpertKey(layer: p[0], expert: p[1])
            }
        }
        var number = 0
        for raw in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            number += 1
            let line = Data(raw)
            do {
                let kind = try decoder.decode(Kind.self, from: line).type
                if kind == "header" {
                    let h = try decoder.decode(Header.self, from: line)
                    guard h.format == "swiftmoe-trace" else { throw TraceError.notATrace(path: path) }
                    guard h.version == TraceCodec.version else { throw TraceError.unsupportedVersion(path: path, version: h.version) }
                    guard trace == nil else { throw bad(number, "a second header") }
                    trace = Trace(header: h.header)
                    continue
                }
                guard trace != nil else { throw number == 1 ? TraceError.notATrace(path: path) : bad(number, "no header line before it") }
                switch kind {
                case "step":
                    let s = try decoder.decode(Step.self, from: line)
                    guard s.step == trace!.steps.count else { throw bad(number, "step \(s.step) out of order") }
                    let k: TraceStep.Kind = s.kind == "prefill" ? .prefill : .decode
                    guard s.kind == "prefill" || s.kind == "decode" else { throw bad(number, "unknown step kind \(s.kind)") }
                    trace!.steps.append(TraceStep(kind: k, position: s.position, tokens: s.tokens, start: s.start_ns, end: s.end_ns))
                case "layer":
                    let l = try decoder.decode(Layer.self, from: line)
                    guard l.step >= 0, l.step == trace!.steps.count - 1 else { throw bad(number, "layer line for step \(l.step) outside that step") }
                    let prefetches = try l.prefetches.map { TracePrefetch(requested: try keys($0.requested, number), queued: try keys($0.queued, number), time: $0.time_ns) }
                    trace!.steps[l.step].layers.append(TraceLayer(layer: l.layer, attentionStart: l.attention_start_ns, ffnStart: l.ffn_start_ns,
                                                                  ffnEnd: l.ffn_end_ns, routes: l.routes, accesses: [], prefetches: prefetches))
                case "access":
                    let a = try decoder.decode(Access.self, from: line)
                    guard a.step >= 0, a.step == trace!.steps.count - 1, let last = trace!.steps[a.step].layers.indices.last,
                          trace!.steps[a.step].layers[last].layer == a.layer else { throw bad(number, "access outside its step and layer") }
                    guard let outcome = outcomeNames.first(where: { $0.value == a.outcome })?.key else { throw bad(number, "unknown outcome \(a.outcome)") }
                    trace!.steps[a.step].layers[last].accesses.append(TraceAccess(expert: a.expert, outcome: outcome, prefetched: a.prefetched, time: a.time_ns,
                                                                                   stall: a.stall_ns, bytes: a.bytes, loadTime: a.load_ns))
                case "load":
                    let l = try decoder.decode(Load.self, from: line)
                    trace!.loads.append(TraceLoad(key: ExpertKey(layer: l.layer, expert: l.expert), prefetch: l.prefetch, thread: l.thread,
                                                  start: l.start_ns, end: l.end_ns, bytes: l.bytes, failed: l.failed))
                case "eviction":
                    let e = try decoder.decode(Eviction.self, from: line)
                    trace!.evictions.append(TraceEviction(key: ExpertKey(layer: e.layer, expert: e.expert), unusedPrefetch: e.unused_prefetch, time: e.time_ns))
                default:
                    throw bad(number, "unknown line type \(kind)")
                }
            } catch let error as TraceError {
                throw error
            } catch {
                throw number == 1 ? TraceError.notATrace(path: path) : bad(number, "\(error)")
            }
        }
        guard let trace else { throw TraceError.notATrace(path: path) }
        try trace.validate(path: path)
        return trace
    }
}

/// CSV tables of a trace (RFC 4180, header row first, seconds as decimals).
public enum TraceCSV {
    public enum Table: String, CaseIterable, Sendable {
        /// One row per expert request: step, layer, expert, hit/miss, prefetched, stall, load.
        case accesses
        /// One row per token, layer and rank: the chosen expert and its router weight.
        case routes
        /// One row per step and layer: attention and FFN seconds, stall.
        case layers
        /// One row per expert load.
        case loads
    }

    public static func encode(_ trace: Trace, table: Table) -> String {
        var rows: [String] = []
        func s(_ ns: UInt64) -> String { String(format: "%.9f", Double(ns) * 1e-9) }
        switch table {
        case .accesses:
            rows.append("step,kind,position,layer,expert,outcome,prefetched,time_s,stall_s,bytes,load_s")
            for (i, step) in trace.steps.enumerated() {
                for l in step.layers {
                    for a in l.accesses {
                        rows.append("\(i),\(step.kind.name),\(step.position),\(l.layer),\(a.expert),\(TraceJSONL.outcomeNames[a.outcome] ?? ""),\(a.prefetched ? 1 : 0),\(s(a.time)),\(s(a.stall)),\(a.bytes),\(s(a.loadTime))")
                    }
                }
            }
        case .routes:
            rows.append("step,kind,position,layer,rank,expert,weight")
            for (i, step) in trace.steps.enumerated() {
                for l in step.layers {
                    for (t, r) in l.routes.enumerated() {
                        for (rank, (e, w)) in zip(r.experts, r.weights).enumerated() {
                            rows.append("\(i),\(step.kind.name),\(step.position + t),\(l.layer),\(rank),\(e),\(w)")
                        }
                    }
                }
            }
        case .layers:
            rows.append("step,kind,position,tokens,layer,attention_s,ffn_s,stall_s")
            for (i, step) in trace.steps.enumerated() {
                for l in step.layers {
                    let stall = l.accesses.reduce(0) { $0 + $1.stall }
                    rows.append("\(i),\(step.kind.name),\(step.position),\(step.tokens.count),\(l.layer),\(s(l.ffnStart &- l.attentionStart)),\(s(l.ffnEnd &- l.ffnStart)),\(s(stall))")
                }
            }
        case .loads:
            rows.append("layer,expert,kind,thread,start_s,end_s,bytes,failed")
            for l in trace.loads {
                rows.append("\(l.key.layer),\(l.key.expert),\(l.prefetch ? "prefetch" : "demand"),\(l.thread),\(s(l.start)),\(s(l.end)),\(l.bytes),\(l.failed ? 1 : 0)")
            }
        }
        return rows.joined(separator: "\n") + "\n"
    }
}

/// Chrome trace-event JSON (`{"traceEvents": [...]}`) for ui.perfetto.dev or chrome://tracing:
/// one process, a `compute` track with a slice per step and, nested in it, attention and FFN
/// slices per layer; an `executor I/O` track with the demand loads (the executor waits in
/// them); one `loader N` track per loader thread with its prefetch loads; instant events for
/// evictions; and a `hit rate` counter per step.
public enum TracePerfetto {
    public static let computeThread = 1
    public static let demandThread = 2
    /// Loader thread n (1…) is drawn on thread `loaderThreadBase + n`.
    public static let loaderThreadBase = 10

    public static func encode(_ trace: Trace) throws -> Data {
        var events: [[String: Any]] = []
        let pid = 1
        func us(_ ns: UInt64) -> Double { Double(ns) / 1000 }
        func meta(_ name: String, tid: Int? = nil, _ value: String) {
            var e: [String: Any] = ["ph": "M", "pid": pid, "name": name, "args": ["name": value]]
            if let tid { e["tid"] = tid }
            events.append(e)
        }
        func slice(_ name: String, cat: String, tid: Int, start: UInt64, end: UInt64, args: [String: Any] = [:]) {
            events.append(["ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": us(start), "dur": us(end >= start ? end - start : 0), "args": args])
        }
        meta("process_name", "moe \((trace.header.model as NSString).lastPathComponent)")
        meta("thread_name", tid: computeThread, "compute (executor)")
        meta("thread_name", tid: demandThread, "executor I/O (demand loads)")
        for t in Set(trace.loads.filter { $0.thread > 0 }.map(\.thread)).sorted() {
            meta("thread_name", tid: loaderThreadBase + t, "loader \(t) (prefetch)")
        }
        var hits = 0, total = 0
        for (i, step) in trace.steps.enumerated() {
            let accesses = step.layers.flatMap(\.accesses)
            slice("\(step.kind.name) @\(step.position) (\(step.tokens.count) tok)", cat: "step", tid: computeThread, start: step.start, end: step.end,
                  args: ["step": i, "tokens": step.tokens.count, "hits": accesses.filter(\.isHit).count, "misses": accesses.filter { !$0.isHit }.count,
                         "stall_ms": Double(step.stall) / 1e6])
            for l in step.layers {
                slice("L\(l.layer) attention", cat: "attention", tid: computeThread, start: l.attentionStart, end: l.ffnStart)
                var args: [String: Any] = ["layer": l.layer]
                if !l.routes.isEmpty { args["experts"] = Set(l.routes.flatMap(\.experts)).sorted().map(String.init).joined(separator: " ") }
                let stall = l.accesses.reduce(0) { $0 + $1.stall }
                if stall > 0 { args["stall_ms"] = Double(stall) / 1e6 }
                slice("L\(l.layer) FFN", cat: "ffn", tid: computeThread, start: l.ffnStart, end: l.ffnEnd, args: args)
                for p in l.prefetches where !p.requested.isEmpty {
                    events.append(["ph": "i", "s": "t", "pid": pid, "tid": computeThread, "name": "prefetch request", "cat": "prefetch", "ts": us(p.time),
                                   "args": ["requested": p.requested.map(\.description).joined(separator: " "), "queued": p.queued.map(\.description).joined(separator: " ")]])
                }
            }
            hits += accesses.filter(\.isHit).count
            total += accesses.count
            if !accesses.isEmpty {
                events.append(["ph": "C", "pid": pid, "name": "hit rate", "ts": us(step.end), "args": ["cumulative": Double(hits) / Double(max(total, 1))]])
            }
        }
        for l in trace.loads {
            let tid = l.prefetch ? loaderThreadBase + l.thread : demandThread
            slice("load \(l.key)\(l.failed ? " (failed)" : "")", cat: l.prefetch ? "prefetch" : "demand", tid: tid, start: l.start, end: l.end,
                  args: ["layer": l.key.layer, "expert": l.key.expert, "bytes": l.bytes])
        }
        for e in trace.evictions {
            events.append(["ph": "i", "s": "t", "pid": pid, "tid": demandThread, "name": e.unusedPrefetch ? "evict \(e.key) (unused prefetch)" : "evict \(e.key)",
                           "cat": "eviction", "ts": us(e.time)])
        }
        let document: [String: Any] = ["traceEvents": events, "displayTimeUnit": "ms",
                                       "otherData": ["model": trace.header.model, "policy": trace.header.cachePolicy, "prefetch": trace.header.prefetch,
                                                     "pool_bytes": trace.header.poolBytes ?? 0, "mode": trace.header.mode]]
        return try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
    }
}
