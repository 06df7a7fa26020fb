import Dispatch
import Executor
import ExpertStore
import Foundation
import Router
import Runtime
import Synchronization
import Tracing

/// Collects a ``Trace`` from a running model: the router's choices (routing observer), layer
/// times (the transformer's timing observer) and the expert store's events (its event sink).
/// The caller brackets each forward pass with ``beginStep(kind:position:tokens:)`` and
/// ``endStep()``. Thread-safe: loader threads report loads at any time; everything it
/// collects sits in one `Mutex`.
public final class TraceRecorder: Sendable {
    private struct State {
        var trace: Trace
        var step: TraceStep?
        var layerIndex: [Int: Int] = [:]
        /// The latest load of each expert, so an access can name the load that brought it in.
        var lastLoad: [ExpertKey: TraceLoad] = [:]

        /// The layer entry of the current step (created on first use).
        mutating func withLayer(_ l: Int, _ body: (inout TraceLayer) -> Void) {
            guard var s = step else { return }
            step = nil  // edited in place below, without a second copy of its layers
            let i: Int
            if let existing = layerIndex[l] {
                i = existing
            } else {
                i = s.layers.count
                s.layers.append(TraceLayer(layer: l))
                layerIndex[l] = i
            }
            body(&s.layers[i])
            step = s
        }
    }

    private let state: Mutex<State>
    private let origin = DispatchTime.now().uptimeNanoseconds

    public init(header: TraceHeader) {
        state = Mutex(State(trace: Trace(header: header)))
    }

    private func relative(_ t: UInt64) -> UInt64 { t > origin ? t - origin : 0 }
    private var now: UInt64 { relative(DispatchTime.now().uptimeNanoseconds) }

    public func beginStep(kind: TraceStep.Kind, position: Int, tokens: [Int]) {
        let start = now
        state.withLock {
            $0.step = TraceStep(kind: kind, position: position, tokens: tokens, start: start)
            $0.layerIndex = [:]
        }
    }

    public func endStep() {
        let end = now
        state.withLock {
            if var s = $0.step {
                s.end = end
                s.layers.sort { $0.layer < $1.layer }
                $0.trace.steps.append(s)
            }
            $0.step = nil
        }
    }

    /// For `Transformer.forward(…observer:)`.
    public func route(layer: Int, position: Int, choices: [ExpertChoice]) {
        let route = TraceRoute(experts: choices.map(\.expert), weights: choices.map(\.weight))
        state.withLock { state in
            guard let s = state.step else { return }
            let t = position - s.position
            state.withLayer(layer) { l in
                if l.routes.count < s.tokens.count { l.routes = Array(repeating: TraceRoute(experts: [], weights: []), count: s.tokens.count) }
                if t >= 0, t < l.routes.count { l.routes[t] = route }
            }
        }
    }

    /// For `Transformer.layerTimingObserver`.
    public func timing(_ t: LayerTiming) {
        let (attention, ffn, ffnEnd) = (relative(t.attentionStart), relative(t.ffnStart), relative(t.ffnEnd))
        state.withLock {
            $0.withLayer(t.layer) { l in
                l.attentionStart = attention
                l.ffnStart = ffn
                l.ffnEnd = ffnEnd
            }
        }
    }

    /// For `PagedExpertStore.setEventSink`.
    public func storeEvent(_ event: ExpertStoreEvent) {
        state.withLock { state in
            switch event {
            case let .access(key, outcome, prefetched, requested, stall):
                let load = (outcome != .hit || prefetched) ? state.lastLoad[key] : nil
                state.withLayer(key.layer) { l in
                    l.accesses.append(TraceAccess(expert: key.expert, outcome: outcome, prefetched: prefetched, time: relative(requested), stall: stall,
                                                  bytes: load?.bytes ?? 0, loadTime: load?.duration ?? 0))
                }
            case let .load(key, prefetch, thread, start, end, bytes, failed):
                let load = TraceLoad(key: key, prefetch: prefetch, thread: thread, start: relative(start), end: relative(end), bytes: bytes, failed: failed)
                state.trace.loads.append(load)
                state.lastLoad[key] = load
            case let .prefetchRequest(layer, keys, queued, time):
                state.withLayer(layer) { $0.prefetches.append(TracePrefetch(requested: keys, queued: queued, time: relative(time))) }
            case let .eviction(key, unused, time):
                state.trace.evictions.append(TraceEviction(key: key, unusedPrefetch: unused, time: relative(time)))
            }
        }
    }

    /// The trace so far (call after the run; loads still in flight may be missing).
    public func finish() -> Trace {
        state.withLock { $0.trace }
    }
}

/// What a traced run evaluates.
public enum TraceWorkload: Sendable {
    /// Teacher-forced text: windows of `window` tokens from an empty KV cache each, evaluated
    /// one token per step (`decode`, like generation) or one window per step (`prefill`).
    case text(tokens: [Int], mode: TraceStep.Kind, window: Int)
    /// A prompt evaluated in one step, then `maxNewTokens` greedy decode steps.
    case generate(prompt: [Int], maxNewTokens: Int)
    /// Exactly these steps (e.g. the steps of an earlier trace): a step at position 0 starts a
    /// new sequence.
    case steps([(kind: TraceStep.Kind, position: Int, tokens: [Int])])

    /// Tokens it evaluates (for generation: the prompt plus the new tokens).
    public var tokenCount: Int {
        switch self {
        case let .text(tokens, _, _): return tokens.count
        case let .generate(prompt, n): return prompt.count + n
        case let .steps(steps): return steps.reduce(0) { $0 + $1.tokens.count }
        }
    }

    /// The steps of an earlier trace, to run again (teacher-forced, same kinds and positions).
    public static func replaying(_ trace: Trace, maxTokens: Int? = nil) -> TraceWorkload {
        var steps: [(kind: TraceStep.Kind, position: Int, tokens: [Int])] = []
        var count = 0
        for s in trace.steps {
            if let maxTokens, count + s.tokens.count > maxTokens { break }
            steps.append((s.kind, s.position, s.tokens))
            count += s.tokens.count
        }
        return .steps(steps)
    }
}

extension Model {
    /// The header of a trace of this model as it is configured now.
    public func traceHeader(mode: String, source: String) -> TraceHeader {
        let c = configuration
        let catalog = pagedExperts?.catalog ?? (try? ExpertCatalog(source: self.source))
        let moeLayers = c.moeLayers
        let sizes = moeLayers.flatMap { l in (0..<c.expertCount).compactMap { catalog?.entry(ExpertKey(layer: l, expert: $0)).map { ExpertPool.rounded($0.decodedLength) } } }
        let m = memoryOptions
        let predictor = transformer.predictor
        let formatter = ISO8601DateFormatter()
        return TraceHeader(
            model: self.source.path, architecture: c.architecture.rawValue, layerCount: c.layerCount, moeLayers: moeLayers, expertCount: c.expertCount,
            expertsPerToken: c.expertsPerToken, expertBytes: sizes.isEmpty ? 0 : sizes.reduce(0, +) / sizes.count, uniformExperts: Set(sizes).count <= 1,
            paged: pagedExperts != nil, poolBytes: pagedExperts?.pool.capacity, budget: m.budget, cachePolicy: m.cachePolicy.rawValue,
            prefetch: predictor?.kind.rawValue ?? "none", prefetchDepth: predictor?.depth ?? m.prefetchDepth, prefetchWidth: predictor?.width ?? 0,
            loaderThreads: predictor == nil ? 0 : m.loaderThreads, threads: transformer.options.threads, kernels: transformer.options.kernels.rawValue,
            mode: mode, source: source, created: formatter.string(from: Date()))
    }

    /// Runs `workload` and records it (docs/trace-format.md). `progress(done, total)` reports
    /// tokens evaluated. Hooks are removed when it returns. The run holds the model
    /// (``Model/withExclusiveAccess(_:)``): the hooks see every pass through the transformer
    /// and every request to the store, so another task's must wait.
    public func recordTrace(_ workload: TraceWorkload, source: String, progress: ((Int, Int) -> Void)? = nil) throws -> Trace {
        try withExclusiveAccess { try record(workload, source: source, progress: progress) }
    }

    private func record(_ workload: TraceWorkload, source: String, progress: ((Int, Int) -> Void)?) throws -> Trace {
        let mode: String
        switch workload {
        case let .text(_, kind, _): mode = kind.name
        case .generate: mode = "generate"
        case .steps: mode = "replay"
        }
        let recorder = TraceRecorder(header: traceHeader(mode: mode, source: source))
        pagedExperts?.setEventSink { recorder.storeEvent($0) }
        transformer.layerTimingObserver = { recorder.timing($0) }
        defer {
            pagedExperts?.setEventSink(nil)
            transformer.layerTimingObserver = nil
        }
        let total = workload.tokenCount
        var done = 0
        func run(_ kind: TraceStep.Kind, _ tokens: [Int], _ cache: KVCache) throws -> [Float] {
            recorder.beginStep(kind: kind, position: cache.count, tokens: tokens)
            let logits = try transformer.forward(tokens: tokens, cache: cache, logits: .last) { layer, position, choices in
                recorder.route(layer: layer, position: position, choices: choices)
            }
            recorder.endStep()
            done += tokens.count
            progress?(done, total)
            return logits
        }
        switch workload {
        case let .text(tokens, kind, window):
            var start = 0
            while start < tokens.count {
                let chunk = Array(tokens[start..<min(start + max(window, 1), tokens.count)])
                let cache = try makeCache(chunk.count)
                if kind == .prefill {
                    _ = try run(.prefill, chunk, cache)
                } else {
                    for t in chunk { _ = try run(.decode, [t], cache) }
                }
                start += chunk.count
            }
        case let .generate(prompt, maxNew):
            guard !prompt.isEmpty else { throw ExecutorError.emptyInput }
            let cache = try makeCache(prompt.count + maxNew)
            var logits = try run(prompt.count == 1 ? .decode : .prefill, prompt, cache)
            for _ in 0..<maxNew {
                logits = try run(.decode, [Model.argmax(logits)], cache)
            }
        case let .steps(steps):
            var cache: KVCache? = nil
            for (i, s) in steps.enumerated() where !s.tokens.isEmpty {
                if s.position == 0 || cache == nil {
                    guard s.position == 0 else {
                        throw TraceError.invalid(path: source, reason: "step \(i) continues a sequence at position \(s.position) whose start is not in the trace")
                    }
                    // A new sequence: the cache holds it up to the next sequence start.
                    let positions = steps[(i + 1)...].prefix { $0.position != 0 }.reduce(s.tokens.count) { $0 + $1.tokens.count }
                    cache = try makeCache(positions)
                } else if let c = cache, c.count != s.position {
                    throw TraceError.invalid(path: source, reason: "step \(i) is at position \(s.position) but its sequence has \(c.count) tokens")
                }
                _ = try run(s.kind, s.tokens, cache!)
            }
        }
        return recorder.finish()
    }
}
