import SecureExec
// SecureExecError (a typealias in SecureExec) is defined there; its `Code` appears in this file's public signature.
import Testing

/// Runs `body`, expecting it to throw a `SecureExecError` with `code` (and
/// `errno`, and a message that names `mentioning`, when given); records an
/// issue otherwise. Returns the error thrown.
///
/// A `NodeRuntime` that `body` returns after all (a `create` that should
/// have been refused) is disposed at once.
@discardableResult
public func expectError<Value>(
    _ code: SecureExecError.Code, errno expectedErrno: Int32? = nil, mentioning: String? = nil, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Value
) async -> SecureExecError? {
    let prefix = comment.map { "\($0): " } ?? ""
    do {
        let value = try await body()
        if let runtime = value as? NodeRuntime { await runtime.dispose() }
        Issue.record("\(prefix)expected \(code), but it returned \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as SecureExecError {
        #expect(error.code == code, "\(prefix)\(error)", sourceLocation: sourceLocation)
        if let expectedErrno {
            #expect(error.errno == expectedErrno, "\(prefix)\(error)", sourceLocation: sourceLocation)
        }
        if let mentioning {
            #expect(
                error.message.contains(mentioning), "\(prefix)the message does not name \(mentioning.debugDescription): \(error)",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("\(prefix)expected a SecureExecError \(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
