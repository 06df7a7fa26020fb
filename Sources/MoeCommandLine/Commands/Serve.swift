import ArgumentParser
import Foundation
import Serving
import Synchronization
import SwiftMoE

struct Serve: ParsableCommand, CheckedArguments {
    private static let defaults = ServerOptions()

    static let configuration = CommandConfiguration(
        abstract: "Serve a model over an OpenAI-compatible HTTP API (chat and completions, streamed or not).",
        discussion: """
            Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics \
            (Prometheus). One model answers one request at a time; others wait in a FIFO queue. Without MODEL, \
            uses \(DefaultModel.path). Sampling flags (--temperature, --top-k, …) are the defaults for what a \
            request leaves unset. Listens on loopback unless --host says otherwise. SIGTERM stops after the \
            requests in progress (at most 30 s); Ctrl-C stops at once. docs/serving.md has the API subset, \
            metrics and routing rules.
            """)

    @Argument(help: "A GGUF file, HF directory or .moe store (default: \(DefaultModel.path)).")
    var model: String?
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var generation: GenerationFlags

    @Option(help: "Address to listen on. The default, loopback, admits only this machine; 0.0.0.0 admits the network (set --api-key).")
    var host: String = defaults.host
    @Option(help: "TCP port (0 picks a free one and prints it).")
    var port: Int = defaults.port
    @Option(name: .customLong("max-queue"), help: "Requests that may wait while one generates; more get 429 (or the fallback). Longer queues absorb bursts but make the last in line wait longer.")
    var maxQueue: Int = defaults.maxQueue
    @Option(name: .customLong("request-timeout"), help: "Seconds a request may take from arrival, queue wait included, before it is stopped with 504 (0 = no limit). Shorter frees the model from runaway requests and cuts long replies.")
    var requestTimeout: Double = defaults.requestTimeout ?? 0
    @Option(name: .customLong("max-body-size"), help: "Largest request body (e.g. 1MiB, 256KB). Larger admits longer conversations and costs memory per request.")
    var maxBodySize = ByteSize(bytes: defaults.maxBodySize)
    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every endpoint but /health (default: the MOE_API_KEY environment variable, else none). Visible in the process list; prefer the variable on shared machines.")
    var apiKey: String?
    @Option(name: .customLong("model-name"), help: "The model's name in /v1/models and responses (default: the model file's name without extension).")
    var modelName: String?
    @Option(help: "Base URL of an OpenAI-compatible server (vLLM, llama.cpp, another moe serve) that takes what this one should not: prompts beyond the context, a full queue, --route matches.")
    var fallback: String?
    @Option(name: .customLong("fallback-api-key"), help: "Bearer key sent to the --fallback server (the client's own key is never forwarded).")
    var fallbackAPIKey: String?
    @Option(name: .customLong("fallback-model"), help: "Replace 'model' in forwarded requests with this name (the fallback's name for its model).")
    var fallbackModel: String?
    @Option(name: .customLong("route"), help: "Send matching requests to --fallback even when this server could answer (repeatable): model=NAME (NAME* prefix, * = any other model), min-prompt-tokens=N, min-max-tokens=N.")
    var routes: [String] = []

    /// The server's options from the flags (checked by `check()`).
    var serverOptions: ServerOptions {
        get throws {
            var o = ServerOptions()
            (o.host, o.port, o.maxQueue, o.maxBodySize) = (host, port, maxQueue, maxBodySize.bytes)
            o.requestTimeout = requestTimeout == 0 ? nil : requestTimeout
            o.apiKey = apiKey ?? ProcessInfo.processInfo.environment["MOE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            (o.modelName, o.fallbackURL, o.fallbackAPIKey, o.fallbackModel) = (modelName, fallback, fallbackAPIKey, fallbackModel)
            do {
                for text in routes { o.routes.append(try RouteRule(parsing: text)) }
                try o.validate()
            } catch {
                throw ValidationError(error.description)
            }
            return o
        }
    }

    func check() throws {
        _ = try serverOptions
    }

    func run() throws {
        try reportingErrors {
            let options = try serverOptions
            let modelPath = try DefaultModel.resolve(model)
            let config = runtime.resolved
            // Not RunConfiguration.open: a server must not record every expert access (that log only grows).
            let loaded = try Model(path: modelPath, options: config.executorOptions, memory: config.memoryOptions)
            let session = try Session(model: loaded, tokenizer: try Tokenizer(path: modelPath))
            let sampling = generation.options  // without --seed, each request draws its own
            let name = options.modelName ?? URL(fileURLWithPath: modelPath).deletingPathExtension().lastPathComponent
            let engine = Engine(session: session, modelName: name, defaults: sampling, maxQueue: options.maxQueue,
                                requestTimeout: options.requestTimeout, metrics: ServerMetrics())
            if options.apiKey == nil, !["127.0.0.1", "localhost", "::1"].contains(options.host) {
                Terminal.note("warning: listening on \(options.host) without --api-key: anyone who can reach it can use the model")
            }
            let app = try Server.application(engine: engine, options: options) { host, port in
                Terminal.note("moe serve: \(name) (context \(engine.contextLength)) on http://\(host):\(port)/v1" +
                              (options.fallbackURL.map { ", fallback \($0)" } ?? ""))
            }
            try runBlocking { try await Server.run(app) }
        }
    }
}

/// Runs async work to completion from a synchronous command (the main thread waits; the work
/// runs on the cooperative pool).
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let outcome = Mutex<Result<Void, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let result: Result<Void, any Error>
        do { try await body(); result = .success(()) } catch { result = .failure(error) }
        outcome.withLock { $0 = result }
        done.signal()
    }
    done.wait()
    try outcome.withLock { $0 }?.get()
}
