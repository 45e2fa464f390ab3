extension NodeRuntime {
    /// The egress policy in force: the one given to `create` or the last
    /// `setEgress`; nil for a runtime created without egress.
    public var egressPolicy: EgressPolicy? { sandbox.egress?.policy }

    /// Replaces the egress policy while the runtime runs.
    ///
    /// New DNS answers and new connections follow `policy` at once. Open
    /// connections it no longer allows are closed (the guest sees a reset),
    /// each reported as a `.revoked` event; addresses pinned for names it no
    /// longer allows are forgotten.
    /// - Throws: `.invalidArgument` for a policy `EgressPolicy.validate()`
    ///   refuses, for a runtime created without egress
    ///   (`Permissions(network: .allow(egress:))`), or for a different
    ///   `outboundNetworkNamespace` (it is fixed at creation); `.disposed`
    ///   after `dispose()`.
    public func setEgress(_ policy: EgressPolicy) async throws(SecureExecError) {
        try policy.validate()
        guard let gateway = sandbox.egress else {
            throw SecureExecError(
                .invalidArgument,
                "this runtime was created without egress; create it with Permissions(network: .allow(egress:))",
                step: "egress")
        }
        guard policy.outboundNetworkNamespace == gateway.policy.outboundNetworkNamespace else {
            throw SecureExecError(
                .invalidArgument, "outboundNetworkNamespace is fixed when the runtime is created", step: "egress")
        }
        guard !sandbox.isDisposed else { throw SecureExecError(.disposed, "the runtime has been disposed", step: "egress") }
        await gateway.update(policy)
    }

    /// Every egress attempt refused from now on (a name not allowed, a port
    /// not allowed, a private address, a cap reached, a connection revoked),
    /// with its destination and reason.
    ///
    /// Each access starts a new sequence that sees events from that moment;
    /// it keeps the newest 1,024 not yet read and ends when the runtime is
    /// disposed. Empty and already finished for a runtime without egress.
    public var egressEvents: EgressEvents {
        guard let gateway = sandbox.egress else {
            let (stream, continuation) = AsyncStream.makeStream(of: EgressEvent.self)
            continuation.finish()
            return EgressEvents(stream: stream)
        }
        return EgressEvents(stream: gateway.subscribe())
    }
}

/// Egress events as they happen (`NodeRuntime.egressEvents`).
public struct EgressEvents: AsyncSequence, Sendable {
    /// One event: the reason, the destination and a sentence.
    public typealias Element = EgressEvent
    /// Ends when the runtime is disposed; never throws.
    public typealias Failure = Never

    let stream: AsyncStream<EgressEvent>

    /// Iterates the events in the order they happened.
    public func makeAsyncIterator() -> AsyncStream<EgressEvent>.AsyncIterator { stream.makeAsyncIterator() }
}
