import Testing

@testable import SecureExec

/// Requests that could be misread on the wire (header injection, request
/// smuggling through the path, empty tokens) are refused before anything is
/// sent; ordinary ones pass.
@Suite("HTTP request validation")
struct HTTPRequestValidationTests {
    @Test(arguments: [
        HTTPRequestSpec(method: ""),
        HTTPRequestSpec(method: "GE T"),
        HTTPRequestSpec(path: ""),
        HTTPRequestSpec(path: "relative"),
        HTTPRequestSpec(path: "/a\rb"),
        HTTPRequestSpec(path: "/a\nb"),
        HTTPRequestSpec(path: "/caf\u{E9}"),
        HTTPRequestSpec(path: "/\u{1F600}"),
        HTTPRequestSpec(path: "/a b"),
        HTTPRequestSpec(path: "/a\0b"),
        HTTPRequestSpec(headers: [("", "v")]),
        HTTPRequestSpec(headers: [("X-A\r\nX-B", "v")]),
        HTTPRequestSpec(headers: [("X-A\n", "v")]),
        HTTPRequestSpec(headers: [("X-A", "v\r\nX-Injected: 1")]),
        HTTPRequestSpec(headers: [("X-A", "v\nw")]),
        HTTPRequestSpec(headers: [("X-A", "v\0")]),
    ])
    func validateRejects(_ request: HTTPRequestSpec) {
        let error = #expect(throws: SecureExecError.self) { try request.validate() }
        #expect(error?.code == .invalidArgument)
    }

    @Test func validateAcceptsOrdinaryRequests() throws {
        try HTTPRequestSpec().validate()
        try HTTPRequestSpec(
            method: "PATCH", path: "/a/b?c=d%20e&f=%E2%9C%93", headers: [("X-Custom_1", "tab\tand unicode ✓"), ("Accept", "*/*")],
            body: [0, 1, 2]
        ).validate()
    }
}
