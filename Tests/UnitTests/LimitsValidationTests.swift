import SecureExec
import Testing

/// Limits out of range are refused by `create` with `.invalidArgument` while
/// it checks its input, before anything that needs root or starts a sandbox.
@Suite("Limits out of range are refused before anything starts", .timeLimit(.minutes(1)))
struct LimitsValidationTests {
    @Test("inotify limits out of range are refused before anything starts", arguments: [
        Limits(inotifyInstances: 0), Limits(inotifyInstances: (1 << 20) + 1), Limits(inotifyWatches: 0), Limits(inotifyWatches: (1 << 24) + 1),
    ])
    func invalidInotifyLimits(limits: Limits) async throws {
        do {
            let runtime = try await NodeRuntime.create(limits: limits)
            await runtime.dispose()
            Issue.record("create accepted \(limits)")
        } catch {
            #expect(error.code == .invalidArgument, "\(error)")
        }
    }

    @Test("fileOperationTimeout must be positive", arguments: [Duration.zero, .seconds(-1)])
    func invalidTimeout(timeout: Duration) async throws {
        do {
            let runtime = try await NodeRuntime.create(limits: Limits(fileOperationTimeout: timeout))
            await runtime.dispose()
            Issue.record("create accepted fileOperationTimeout \(timeout)")
        } catch {
            #expect(error.code == .invalidArgument, "\(error)")
        }
    }
}
