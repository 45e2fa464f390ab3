import SecureExec
import Testing

/// With `MemberImportVisibility` on, a member is usable only when the module
/// that declares it is imported. This target imports SecureExec alone, as a
/// package that depends on it would, so it compiles only while
/// `SecureExecError` and its members are declared in SecureExec itself (they
/// once lived in an internal module, and `error.code` needed a second import).
/// The errors come from input checks that run before anything needs root.
@Suite("SecureExecError's members with only `import SecureExec`", .timeLimit(.minutes(1)))
struct ErrorMembersTests {
    @Test("an unknown signal name: code, step, errno and message")
    func unknownSignalName() {
        do {
            let signal = try Signal(named: "NOPE")
            Issue.record("Signal(named: \"NOPE\") gave \(signal)")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.step == "signal")
            #expect(error.errno == nil)
            #expect(error.message.contains("NOPE"))
            #expect(error.description.hasPrefix("\(SecureExecError.Code.invalidArgument): "))
        }
    }

    @Test("create refuses a 1-byte workspace while checking its input")
    func tinyWorkspace() async {
        do {
            let runtime = try await NodeRuntime.create(limits: Limits(workspaceBytes: 1))
            await runtime.dispose()
            Issue.record("create accepted a 1-byte workspace")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.step == "limits")
            #expect(error.errno == nil)
            #expect(!error.message.isEmpty)
        }
    }
}
