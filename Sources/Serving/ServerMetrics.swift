import ExpertStore
import Generation
import Prometheus
import Runtime
import Synchronization

/// The server's Prometheus metrics (`GET /metrics`, text format 0.0.4). One registry per
/// server, so two servers in one process (tests, a fallback pair) do not mix their counts.
/// docs/serving.md lists every metric.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let promptTokens: Counter
    private let completionTokens: Counter
    private let reusedTokens: Counter
    private let cancelledRequests: Counter
    private let prefillRate: ValueHistogram
    private let decodeRate: ValueHistogram
    private let queueDepth: Gauge
    private let running: Gauge
    private let expertHits: Counter
    private let expertMisses: Counter
    private let expertBytesRead: Counter
    private let expertStallSeconds: Counter
    private let expertLowbitMisses: Counter
    private let lossy: Gauge
    private let poolBytes: Gauge
    private let poolPeakBytes: Gauge
    private let peakRSS: Gauge
    private let rss: Gauge
    /// The expert store's cumulative counters at the last scrape (Prometheus counters only go up by increments).
    private let lastStore = Mutex<ExpertStoreMetrics?>(nil)

    /// Token rates from 1 to 100k tokens/s, a bucket per doubling-ish step.
    static let rateBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]

    private static func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "moe", metricName: metric, unitName: "", helpText: help)
    }

    public init() {
        let r = registry
        promptTokens = r.makeCounter(descriptor: Self.name("prompt_tokens_total", "Prompt tokens of requests served locally (reused ones included)."))
        completionTokens = r.makeCounter(descriptor: Self.name("completion_tokens_total", "Tokens generated locally."))
        reusedTokens = r.makeCounter(descriptor: Self.name("reused_prompt_tokens_total", "Prompt tokens whose KV cache entries were reused from the previous request."))
        cancelledRequests = r.makeCounter(descriptor: Self.name("requests_cancelled_total", "Requests whose client went away before the answer was complete (streamed or not, generating or queued); their generation stopped."))
        prefillRate = r.makeValueHistogram(descriptor: Self.name("prefill_tokens_per_second", "Prompt tokens evaluated per second, per request (reused tokens not counted)."), buckets: Self.rateBuckets)
        decodeRate = r.makeValueHistogram(descriptor: Self.name("decode_tokens_per_second", "Generated tokens per second of the decode loop, per request."), buckets: Self.rateBuckets)
        queueDepth = r.makeGauge(descriptor: Self.name("queue_depth", "Requests waiting for the model (not counting the one generating)."))
        running = r.makeGauge(descriptor: Self.name("requests_running", "Requests generating now (0 or 1: one model, one request at a time)."))
        expertHits = r.makeCounter(descriptor: Self.name("expert_cache_hits_total", "Expert requests found in the expert pool."))
        expertMisses = r.makeCounter(descriptor: Self.name("expert_cache_misses_total", "Expert requests that had to be read from disk."))
        expertBytesRead = r.makeCounter(descriptor: Self.name("expert_bytes_read_total", "Bytes of expert weights read from disk (demand and prefetch)."))
        expertStallSeconds = r.makeCounter(descriptor: Self.name("expert_stall_seconds_total", "Seconds the forward pass waited for experts to arrive."))
        expertLowbitMisses = r.makeCounter(descriptor: Self.name("expert_lowbit_misses_total", "Expert misses computed from the expert's low-bit copy (--on-miss lowbit; lossy)."))
        lossy = r.makeGauge(descriptor: Self.name("lossy_on_miss", "1 when decode misses are computed from low-bit copies (--on-miss lowbit): outputs are not the model's exact ones."))
        poolBytes = r.makeGauge(descriptor: Self.name("expert_pool_bytes", "Capacity of the expert pool in bytes (0 when experts are not paged)."))
        poolPeakBytes = r.makeGauge(descriptor: Self.name("expert_pool_peak_bytes", "Most expert pool bytes in use at once."))
        peakRSS = r.makeGauge(descriptor: Self.name("peak_resident_bytes", "Peak resident set size of the process (VmHWM)."))
        rss = r.makeGauge(descriptor: Self.name("resident_bytes", "Resident set size of the process now (VmRSS)."))
    }

    /// Counts an answered request. `endpoint` is one of the server's paths or "other";
    /// `engine` is local, fallback, or none (refused before either engine took it).
    public func recordRequest(endpoint: String, status: Int, engine: String) {
        registry.makeCounter(descriptor: Self.name("requests_total", "HTTP requests answered, by endpoint, status and the engine that served them."),
                             labels: [("endpoint", endpoint), ("status", String(status)), ("engine", engine)]).increment()
    }

    /// Counts a request handed to the fallback server, by why (route, context, queue_full).
    public func recordFallback(reason: String) {
        registry.makeCounter(descriptor: Self.name("fallback_requests_total", "Requests forwarded to the --fallback server, by reason."),
                             labels: [("reason", reason)]).increment()
    }

    func setQueue(waiting: Int, running count: Int) {
        queueDepth.set(to: Double(waiting))
        running.set(to: Double(count))
    }

    /// Counts a request given up by its client: generation stopped early or never started.
    func recordCancelled() { cancelledRequests.increment() }

    func recordGeneration(_ r: GenerationResult) {
        promptTokens.increment(by: Int64(r.promptTokens))
        completionTokens.increment(by: Int64(r.generatedTokens))
        reusedTokens.increment(by: Int64(r.reusedTokens))
        if r.prefillSeconds > 0, r.promptTokens > r.reusedTokens { prefillRate.record(r.prefillTokensPerSecond) }
        if r.generatedTokens > 1, r.decodeSeconds > 0 { decodeRate.record(r.decodeTokensPerSecond) }
    }

    /// The text of `GET /metrics`, with the expert store's and the process's numbers read now.
    public func exposition(model: Model) -> String {
        if let store = model.pagedExperts {
            let now = store.metrics
            let last = lastStore.withLock { last in
                defer { last = now }
                return last
            }
            expertHits.increment(by: Int64(max(0, now.hits - (last?.hits ?? 0))))
            expertMisses.increment(by: Int64(max(0, now.misses - (last?.misses ?? 0))))
            expertBytesRead.increment(by: Int64(max(0, now.bytesRead - (last?.bytesRead ?? 0))))
            expertStallSeconds.increment(by: max(0, now.stallSeconds - (last?.stallSeconds ?? 0)))
            expertLowbitMisses.increment(by: Int64(max(0, now.lowbitMisses - (last?.lowbitMisses ?? 0))))
            poolBytes.set(to: Double(now.poolCapacity))
            poolPeakBytes.set(to: Double(now.peakPoolBytes))
        }
        lossy.set(to: model.missCopies == nil ? 0 : 1)
        peakRSS.set(to: Double(ProcessStats.peakResidentBytes))
        if let bytes = ProcessStats.residentBytes { rss.set(to: Double(bytes)) }
        return registry.emitToString()
    }
}
