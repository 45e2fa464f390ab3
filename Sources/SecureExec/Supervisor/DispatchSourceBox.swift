import Dispatch

/// Carries a Dispatch source across concurrency domains.
///
/// Dispatch sources are thread-safe (resume, cancel and the handlers may be
/// used from any thread); only the Swift overlay lacks the Sendable mark.
struct DispatchSourceBox: @unchecked Sendable {
    let source: any DispatchSourceProtocol

    func resume() { source.resume() }
    func cancel() { source.cancel() }
}
