import AsyncHTTPClient
import Foundation
import Generation
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Runtime
import Serving
import TestSupport
import Tokenizer

/// The bundled demo model (context 1024, ~200 tokens/s in a debug build).
enum Demo {
    static let path = Fixtures.packageRoot.appendingPathComponent("Models/demo/demo.moe").path

    /// One model and tokenizer for every test (a model serves many sessions; its pool stays warm).
    private static let shared = Result { (try Model(path: path), try Tokenizer(path: path)) }

    /// A session of its own (its own KV cache) on the demo model: a server's, or the library's
    /// answer to compare the server with.
    static func session(contextLength: Int? = nil) throws -> Session {
        let (model, tokenizer) = try shared.get()
        return try Session(model: model, tokenizer: tokenizer, contextLength: contextLength)
    }

    static var greedy: GenerationOptions {
        var o = GenerationOptions.greedy
        o.maxTokens = 12
        return o
    }
}

/// One live server on loopback (a free port) over its own engine and metrics, and requests to
/// it through AsyncHTTPClient (a connection per request: the server closes generating
/// requests' connections, as it reads them for client disconnects).
struct TestServer: Sendable {
    let port: Int
    let engine: Engine
    var base: String { "http://localhost:\(port)" }

    struct Reply: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    }

    /// Runs `body` against a server on the demo model; the server stops when it returns.
    static func with<T: Sendable>(options: ServerOptions = ServerOptions(), context: Int? = nil, defaults: GenerationOptions = Demo.greedy,
                                  maxQueue: Int? = nil, requestTimeout: Double? = nil, session: Session? = nil,
                                  _ body: @Sendable (TestServer) async throws -> T) async throws -> T {
        let session = try session ?? Demo.session(contextLength: context)
        let engine = Engine(session: session, modelName: "demo", defaults: defaults, maxQueue: maxQueue ?? options.maxQueue,
                            requestTimeout: requestTimeout, metrics: ServerMetrics())
        var options = options
        options.requestTimeout = requestTimeout
        let app = try Server.application(engine: engine, options: options)
        return try await app.test(.live) { client in
            try await body(TestServer(port: client.port ?? 0, engine: engine))
        }
    }

    func request(_ method: HTTPMethod, _ path: String, body: String? = nil, headers: [(String, String)] = []) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        return try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    }

    func post(_ path: String, _ body: String, headers: [(String, String)] = []) async throws -> Reply {
        let response = try await request(.POST, path, body: body, headers: headers)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: try await response.body.collect(upTo: 1 << 24)))
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> Reply {
        let response = try await request(.GET, path, headers: headers)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: try await response.body.collect(upTo: 1 << 24)))
    }

    func metric(_ line: String) async throws -> Double? {
        let text = try await get("/metrics").body
        return text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }
}

/// Server-sent events: the JSON of each `data:` line, and whether `[DONE]` ended them.
struct Events {
    var chunks: [[String: Any]] = []
    var done = false

    init(_ text: String) {
        for line in text.split(separator: "\n") where line.hasPrefix("data: ") {
            let payload = line.dropFirst(6)
            if payload == "[DONE]" { done = true; continue }
            if let object = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any] { chunks.append(object) }
        }
    }

    /// The text the chunks carry (chat deltas or completion text).
    var text: String {
        chunks.compactMap { chunk -> String? in
            guard let choice = (chunk["choices"] as? [[String: Any]])?.first else { return nil }
            return (choice["delta"] as? [String: Any])?["content"] as? String ?? choice["text"] as? String
        }.joined()
    }

    var finishReason: String? {
        chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }.last
    }
}

/// A JSON request body.
func body(_ object: [String: Any]) -> String {
    String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
}

func chat(_ messages: [(String, String)], maxTokens: Int = 12, extra: [String: Any] = [:]) -> String {
    var object: [String: Any] = ["model": "demo", "messages": messages.map { ["role": $0.0, "content": $0.1] }, "max_tokens": maxTokens, "temperature": 0]
    object.merge(extra) { $1 }
    return body(object)
}

func completion(_ prompt: String, maxTokens: Int = 12, extra: [String: Any] = [:]) -> String {
    var object: [String: Any] = ["model": "demo", "prompt": prompt, "max_tokens": maxTokens, "temperature": 0]
    object.merge(extra) { $1 }
    return body(object)
}
