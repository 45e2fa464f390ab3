import SecureExec
import Testing

/// A host app's view model, isolated to the main actor, that drives a
/// runtime from its own methods. This target compiles only while
/// `withNodeRuntime` and `fetchStreaming` run their closures on the caller's
/// actor: otherwise capturing `self` (main-actor state) in them is "sending
/// a non-Sendable value" under Swift 6.
@MainActor
final class PreviewModel {
    var status = 0
    var firstChunk: [UInt8] = []
    var log: [String] = []

    func refresh(port: Int) async throws {
        try await withNodeRuntime(limits: Limits(workspaceBytes: 1)) { runtime in
            self.log.append("created")
            self.status = try await runtime.fetchStreaming(port) { response in
                self.log.append("head")
                for try await chunk in response.body {
                    self.firstChunk = chunk
                    break
                }
                return response.status
            }
        }
    }
}

@Suite("The API from an actor", .timeLimit(.minutes(1)))
struct ActorIsolationTests {
    @Test("a main-actor type calls withNodeRuntime and fetchStreaming and updates its own state")
    @MainActor
    func mainActorCaller() async {
        let model = PreviewModel()
        // The 1-byte workspace is refused before anything needs root, so this
        // runs anywhere; what it checks is that the calls compile from here.
        do {
            try await model.refresh(port: 3000)
            Issue.record("a 1-byte workspace was accepted")
        } catch {
            #expect((error as? SecureExecError)?.code == .invalidArgument)
        }
        #expect(model.log.isEmpty)
    }
}
