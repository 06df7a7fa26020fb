import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `moe serve`'s HTTP side: the routes of the OpenAI subset, health and metrics over one
/// ``Engine`` (docs/serving.md).
///
/// ```swift
/// let app = try Server.application(engine: engine, options: options)
/// try await Server.run(app)
/// ```
public enum Server {
    /// Runs `app` until a signal stops it: SIGTERM stops accepting and lets the requests in
    /// progress finish (at most `drain` seconds, then they are cancelled); SIGINT (Ctrl-C)
    /// cancels them at once — a generation stops within a token.
    public static func run(_ app: some ApplicationProtocol, drain: Double = 30) async throws {
        var configuration = ServiceGroupConfiguration(services: [app], logger: app.logger)
        configuration.gracefulShutdownSignals = [.sigterm]
        configuration.cancellationSignals = [.sigint]
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64(drain * 1000))
        do { try await ServiceGroup(configuration: configuration).run() } catch is CancellationError {}
    }

    /// The application, ready to run. `onListening` gets the address actually bound (port 0 picks one).
    public static func application(engine: Engine, options: ServerOptions, logger: Logger? = nil,
                                   onListening: @escaping @Sendable (_ host: String, _ port: Int) -> Void = { _, _ in })
        throws(ServerOptionsError) -> some ApplicationProtocol {
        try options.validate()
        let fallback = try options.fallbackURL.map { url throws(ServerOptionsError) in
            try FallbackClient(url: url, apiKey: options.fallbackAPIKey, model: options.fallbackModel)
        }
        let router = Router()
        router.add(middleware: APIMiddleware(apiKey: options.apiKey, metrics: engine.metrics))
        let completions = CompletionHandler(engine: engine, fallback: fallback, options: options)
        router.post(.init(stringLiteral: Endpoint.chatCompletions.rawValue)) { request, _ in
            try await completions.respond(to: request, endpoint: .chatCompletions)
        }
        router.post(.init(stringLiteral: Endpoint.completions.rawValue)) { request, _ in
            try await completions.respond(to: request, endpoint: .completions)
        }
        let started = Int(Date().timeIntervalSince1970)
        let modelObject: JSONValue = .object(["id": .string(engine.modelName), "object": "model", "created": .int(started), "owned_by": "swiftmoe"])
        router.get("/v1/models") { _, _ in
            Response.json(OpenAIJSON.encode(JSONValue.object(["object": "list", "data": .array([modelObject])])))
        }
        router.get("/v1/models/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard id == engine.modelName else {
                throw APIError(status: 404, message: "The model '\(id)' does not exist; this server serves '\(engine.modelName)'.",
                               type: "invalid_request_error", param: "model", code: "model_not_found")
            }
            return Response.json(OpenAIJSON.encode(modelObject))
        }
        router.get("/health") { _, _ in
            Response.json(OpenAIJSON.encode(JSONValue.object([
                "status": "ok", "model": .string(engine.modelName), "context": .int(engine.contextLength),
                "queue_depth": .int(engine.queue.waiting), "max_queue": .int(options.maxQueue),
            ])))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: engine.metrics.exposition(model: engine.model))))
        }
        var log = logger ?? Logger(label: "moe-serve")
        if logger == nil { log.logLevel = .critical }  // failures reach the caller as errors; Ctrl-C is not one
        return Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port), serverName: "moe serve"),
                           onServerRunning: { channel in onListening(options.host, channel.localAddress?.port ?? options.port) },
                           logger: log)
    }
}
