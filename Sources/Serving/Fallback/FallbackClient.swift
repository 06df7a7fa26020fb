import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Forwards requests to another OpenAI-compatible server (vLLM, llama.cpp's server, another
/// `moe serve`) and hands its answer back as it arrives, so a streamed reply stays streamed.
public struct FallbackClient: Sendable {
    /// The server's root, e.g. `http://127.0.0.1:8081` (a trailing `/v1` is dropped: paths are appended).
    public let baseURL: String
    let apiKey: String?
    let model: String?

    public init(url: String, apiKey: String? = nil, model: String? = nil) throws(ServerOptionsError) {
        baseURL = try Self.baseURL(url)
        self.apiKey = apiKey
        self.model = model
    }

    /// `url` without a trailing `/` or `/v1`; an error unless it is http(s) with a host.
    static func baseURL(_ url: String) throws(ServerOptionsError) -> String {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = parsed.host, !host.isEmpty, parsed.query == nil else {
            throw .invalid("--fallback \"\(url)\" is not an http:// or https:// URL with a host")
        }
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasSuffix("/v1") { base.removeLast(3) }
        return base
    }

    /// The upstream's answer: status, content type and a body that streams.
    struct Answer: Sendable {
        let status: Int
        let contentType: String?
        let body: HTTPClientResponse.Body
    }

    /// Sends `body` (the client's JSON, `model` replaced if configured) to the same endpoint
    /// upstream. Throws ``APIError/fallbackUnreachable(_:)`` when no answer comes back.
    func forward(endpoint: Endpoint, body: Data, timeout: Double?) async throws(APIError) -> Answer {
        var request = HTTPClientRequest(url: baseURL + endpoint.rawValue)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.body = .bytes(ByteBuffer(data: rewritten(body)))
        let seconds = timeout ?? ServerOptions.Limits.requestTimeout.upperBound
        do {
            let response = try await Self.client.execute(request, timeout: .milliseconds(Int64(seconds * 1000)))
            return Answer(status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"), body: response.body)
        } catch {
            throw .fallbackUnreachable("\(baseURL)\(endpoint.rawValue): \(error)")
        }
    }

    /// One client for the process (never shut down, so it lives as long as the process): no
    /// redirects, nor retries of a refused connection — an unreachable fallback is a 502 at once,
    /// not when the request times out.
    private static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10))
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// The body with `model` set to the fallback's name for it, when one is configured.
    private func rewritten(_ body: Data) -> Data {
        guard let model, var object = try? JSONValue.object(from: body) else { return body }
        object["model"] = .string(model)
        return OpenAIJSON.encode(JSONValue.object(object))
    }
}
