/// One HTTP/1.1 request to send to a guest.
///
/// Every `NodeRuntime.fetch` and `fetchStreaming` checks its method, path
/// and headers with `validate()` before anything is sent, so bad input is
/// `.invalidArgument` and never reaches the guest.
public struct HTTPRequestSpec: Sendable {
    /// The request method, an RFC 9110 token (`GET`, `POST`, a custom one). Default `GET`.
    public var method: String
    /// Origin-form request target; must start with "/".
    /// Default `/`.
    public var path: String
    /// Header fields in order, as (name, value); a repeated name is sent once per pair.
    public var headers: [(String, String)]
    /// The body, or nil for none; `validate()` does not look at it.
    public var body: [UInt8]?

    /// A request; by default `GET /` with no headers and no body.
    public init(method: String = "GET", path: String = "/", headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    /// Throws `.invalidArgument` when the request could not be sent as written: the method is not an
    /// RFC 9110 token; the path is empty, does not start with "/", or holds a space or control character;
    /// a header name is not a token; a header value holds a control character other than HTAB (CR, LF and
    /// NUL would allow header injection; NIO's outbound validator rejects the other controls too, so we
    /// reject them here rather than fail half-way through the write).
    public func validate() throws(SecureExecError) {
        guard isToken(method) else {
            throw SecureExecError(.invalidArgument, "HTTP method \(String(reflecting: method)) is not a token", step: "validate request")
        }
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) else {
            throw SecureExecError(
                .invalidArgument,
                "HTTP path \(String(reflecting: path)) must start with \"/\" and hold only visible ASCII (percent-encode the rest)",
                step: "validate request")
        }
        for (name, value) in headers {
            guard isToken(name) else {
                throw SecureExecError(.invalidArgument, "HTTP header name \(String(reflecting: name)) is not a token", step: "validate request")
            }
            guard isFieldValue(value) else {
                throw SecureExecError(.invalidArgument, "value of HTTP header \(name) holds a control character", step: "validate request")
            }
        }
    }
}

/// RFC 9110 `token`: 1*tchar.
private func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.utf8.allSatisfy { byte in
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// A field value may hold anything but control characters (HTAB excepted).
private func isFieldValue(_ text: String) -> Bool {
    text.utf8.allSatisfy { $0 == UInt8(ascii: "\t") || ($0 >= 0x20 && $0 != 0x7F) }
}
