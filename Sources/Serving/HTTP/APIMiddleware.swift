import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

extension HTTPField.Name {
    /// `local` or `fallback`: which engine answered (absent on refusals). A literal valid name.
    static let servedBy = HTTPField.Name("x-served-by")!
    /// Why a request went to the fallback: `route`, `context` or `queue_full`.
    static let fallbackReason = HTTPField.Name("x-fallback-reason")!
    /// Prompt tokens whose KV cache entries were reused (non-streamed local answers).
    static let reusedTokens = HTTPField.Name("x-reused-tokens")!
}

/// Around every route: the API key check, every error turned into an OpenAI-style body, and
/// the request counted by endpoint, status and engine.
struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?
    let metrics: ServerMetrics

    static var endpoints: Set<String> { Set(Endpoint.allCases.map(\.rawValue) + ["/v1/models", "/health", "/metrics"]) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        var response: Response
        do {
            if let apiKey, path != "/health", !Self.authorized(request, key: apiKey) { throw APIError.unauthorized }
            response = try await next(request, context)
        } catch {
            response = Self.errorResponse(for: error, path: path)
        }
        // A generating request's connection is read until the answer is out, to notice a client
        // that goes away; the server then closes it, and says so, errors included (a client
        // that reused it would find it closed).
        if Endpoint(rawValue: path) != nil { response.headers[.connection] = "close" }
        let endpoint = Self.endpoints.contains(path) || path.hasPrefix("/v1/models/") ? (path.hasPrefix("/v1/models/") ? "/v1/models/{id}" : path) : "other"
        metrics.recordRequest(endpoint: endpoint, status: Int(response.status.code), engine: response.headers[.servedBy] ?? "none")
        return response
    }

    /// `Authorization: Bearer KEY`, compared in time independent of where the key differs.
    static func authorized(_ request: Request, key: String) -> Bool {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.utf8.dropFirst(7)), expected = Array(key.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for i in 0..<expected.count { difference |= expected[i] ^ (i < given.count ? given[i] : 0) }
        return difference == 0
    }

    static func errorResponse(for error: any Error, path: String) -> Response {
        let apiError: APIError
        switch error {
        case let error as APIError:
            apiError = error
        case is CancellationError:
            // The client went away (or the server is stopping); 499 as nginx counts it.
            apiError = APIError(status: 499, message: "The client closed the request.", type: "invalid_request_error", code: "client_closed_request")
        case let error as any HTTPResponseError:
            switch error.status {
            case .notFound: apiError = .notFound(path)
            case .methodNotAllowed: apiError = APIError(status: 405, message: "Method not allowed on \(path).", type: "invalid_request_error")
            case .contentTooLarge: apiError = APIError(status: 413, message: "The request body is too large.", type: "invalid_request_error")
            default: apiError = APIError(status: Int(error.status.code), message: error.status.reasonPhrase, type: "invalid_request_error")
            }
        default:
            apiError = .internalError("\(error)")
        }
        // A full queue drains one request at a time: clients that honour Retry-After come back soon.
        return .json(apiError.body, status: apiError.status, headers: apiError.status == 429 ? [.retryAfter: "1"] : [:])
    }
}

extension Response {
    static func json(_ body: Data, status: Int = 200, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
