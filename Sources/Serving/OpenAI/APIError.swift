import Foundation

/// An error answered in OpenAI's shape: `{"error":{"message":…,"type":…,"param":…,"code":…}}`
/// with an HTTP status. Every refusal of the server is one of these, so OpenAI clients raise
/// their usual exceptions (`BadRequestError`, `AuthenticationError`, `RateLimitError`, …).
public struct APIError: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        (self.status, self.message, self.type, self.param, self.code) = (status, message, type, param, code)
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// 400: a malformed body, an unknown or unsupported parameter, a value out of range.
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 400 with OpenAI's code for a prompt the context cannot hold.
    public static func contextLengthExceeded(promptTokens: Int, context: Int, param: String) -> APIError {
        invalidRequest("This model's maximum context length is \(context) tokens, but the prompt is \(promptTokens) tokens (one more position is needed to reply). Shorten the \(param).",
                       param: param, code: "context_length_exceeded")
    }

    public static let unauthorized = APIError(status: 401, message: "Incorrect or missing API key: send the server's --api-key as 'Authorization: Bearer KEY'.",
                                              type: "invalid_request_error", code: "invalid_api_key")

    public static func queueFull(limit: Int) -> APIError {
        APIError(status: 429, message: "The server is busy: \(limit) requests are already waiting (--max-queue). Retry later.",
                 type: "rate_limit_error", code: "queue_full")
    }

    public static func timeout(seconds: Double, whileQueued: Bool) -> APIError {
        APIError(status: 504, message: "The request took longer than the server's --request-timeout of \(seconds) s" + (whileQueued ? " waiting in the queue." : "."),
                 type: "timeout_error", code: "request_timeout")
    }

    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "The request body is larger than the server's --max-body-size of \(limit) bytes.", type: "invalid_request_error")
    }

    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, message: "Unknown endpoint \(path); this server answers POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics.",
                 type: "invalid_request_error", code: "unknown_url")
    }

    public static func fallbackUnreachable(_ detail: String) -> APIError {
        APIError(status: 502, message: "The fallback server could not be reached: \(detail)", type: "server_error", code: "fallback_unreachable")
    }

    public static func internalError(_ detail: String) -> APIError {
        APIError(status: 500, message: "Internal error: \(detail)", type: "server_error")
    }

    /// The JSON body.
    public var body: Data {
        struct Envelope: Encodable {
            struct Inner: Encodable {
                let message: String, type: String, param: String?, code: String?
                func encode(to encoder: any Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    try c.encode(message, forKey: .message)
                    try c.encode(type, forKey: .type)
                    try c.encode(param, forKey: .param)  // null, as OpenAI writes it
                    try c.encode(code, forKey: .code)
                }
                enum CodingKeys: String, CodingKey { case message, type, param, code }
            }
            let error: Inner
        }
        return OpenAIJSON.encode(Envelope(error: .init(message: message, type: type, param: param, code: code)))
    }
}

/// The server's one JSON encoder (sorted keys, no escaped slashes), used for every body.
enum OpenAIJSON {
    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every type encoded here holds only strings, numbers and optionals: encoding cannot fail.
        return (try? encoder.encode(value)) ?? Data(#"{"error":{"message":"encoding failed","type":"server_error","param":null,"code":null}}"#.utf8)
    }
}
