/// One HTTP header line, as sent or received.
///
/// Names keep the case they were sent with; `FetchResponse.header(_:)` and
/// `StreamingResponse.header(_:)` compare them case-insensitively.
public struct HTTPHeader: Sendable, Hashable {
    /// The field name, e.g. "content-type".
    public var name: String
    /// The field value, e.g. "text/plain".
    public var value: String

    /// A header `name: value`; `fetch` checks it before sending (a name must be a
    /// token, a value may not hold control characters but HTAB).
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The response to `NodeRuntime.fetch`: status, headers in order (repeated
/// names kept) and the body as bytes.
public struct FetchResponse: Sendable, Hashable {
    /// The status code, e.g. 200.
    public var status: Int
    /// The reason phrase the guest sent, e.g. "OK" (may be empty).
    public var reason: String
    /// The header fields in the order sent, repeated names kept.
    public var headers: [HTTPHeader]
    /// The whole body (at most the fetch's `maxBodyBytes`).
    public var body: [UInt8]

    /// The body decoded as UTF-8 (invalid sequences replaced).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The first value of header `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Every value of header `name` (case-insensitive), in order.
    public func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }
}
