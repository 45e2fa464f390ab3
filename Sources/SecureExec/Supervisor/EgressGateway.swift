import CEgress
import CNamespaces
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A sandbox's way out: its DNS server and its outbound TCP, both decided by
/// the egress policy (ARCHITECTURE.md, "Egress").
///
/// `se_egress_prepare` makes, inside the sandbox's network namespace, the
/// listeners this class serves and the nftables rules that send them every
/// TCP connection to a non-loopback address and every DNS query. Names
/// resolve on the host, only when the policy allows them; each address handed
/// to the guest is pinned to the name it answered, and a connection goes out
/// only to its original destination address, only if a pinned name (or an IP
/// rule) allows that address and port. The supervisor dials from the host (or
/// the policy's outbound namespace) and pipes bytes; it never reads them.
///
/// Concurrency: listeners and piped connections live on NIO's event loops;
/// resolution runs in tasks (the system resolver on a Dispatch thread).
/// `state` (a Mutex) guards the policy, the pins, the open connections and
/// the byte count; nothing blocks while holding it.
package final class EgressGateway: Sendable {
    /// The address the guest's /etc/resolv.conf names.
    package static let nameserver = "127.0.0.1"
    /// Answers live briefly in the guest's caches; pins outlive them.
    static let answerTTL: UInt32 = 30
    /// Addresses pinned at once; the oldest go first past it.
    static let maxPins = 4096
    /// Names pinned to one address (a CDN's address answers many); the oldest go first.
    package static let maxNamesPerPin = 16
    /// Refused connections waiting for the guest's first bytes; past it, reset at once.
    static let maxRefusing = 64
    /// DNS queries being answered at once; more are dropped (clients retry).
    static let maxQueriesInFlight = 64
    /// DNS-over-TCP connections open at once.
    static let maxDNSStreams = 16
    static let resolveTimeout: Duration = .seconds(5)
    /// SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST (SOL_IPV6): the
    /// destination a redirected connection was sent to. The same number for both.
    private static let originalDestination: Int32 = 80
    static let connectTimeout: Duration = .seconds(10)
    static let hostAddressesAge: Duration = .seconds(30)

    /// The sockets made in the sandbox for the gateway (all non-blocking, close-on-exec).
    struct Sockets: Sendable {
        let connections: [Int32]
        let dnsDatagrams: [Int32]
        let dnsStreams: [Int32]

        var all: [Int32] { connections + dnsDatagrams + dnsStreams }
    }

    /// One outbound connection: the guest's side, and the upstream once dialed.
    private struct Outbound {
        let guest: any Channel
        var upstream: (any Channel)?
        let address: IPAddress
        let port: Int
        let host: String?
    }

    private struct State {
        var policy: EgressPolicy
        var hostAddresses: Set<IPAddress>
        /// When `hostAddresses` was read: interfaces come and go, so it is read again after `hostAddressesAge`.
        var hostAddressesRead = ContinuousClock.now
        /// Address → the names whose answers held it (newest last, at most
        /// `maxNamesPerPin`), oldest address first in `pinOrder`.
        var pins: [IPAddress: [String]] = [:]
        var pinOrder: [IPAddress] = []
        /// The last `setEgress` applied (a later call wins, whatever order they finish in).
        var appliedUpdate = 0
        var refusing = 0
        /// Whether the outbound side had a route to an address, and when that was checked.
        var routes: [IPAddress: (Bool, ContinuousClock.Instant)] = [:]
        var connections: [ObjectIdentifier: Outbound] = [:]
        var bytes = 0
        var byteLimitReported = false
        var dnsStreams = 0
        var closed = false
        var listeners: [any Channel] = []
    }

    private let state: Mutex<State>
    private let events = EgressEventHub()
    private let queriesInFlight = Atomic<Int>(0)
    /// Resolver calls not yet returned, answered or not.
    private let lookupsRunning = Atomic<Int>(0)
    private let updates = Atomic<Int>(0)
    private let outboundFD: Int32
    private let logger: Logger

    private init(policy: EgressPolicy, hostAddresses: Set<IPAddress>, outboundFD: Int32, logger: Logger) {
        state = Mutex(State(policy: policy, hostAddresses: hostAddresses))
        self.outboundFD = outboundFD
        self.logger = logger
    }

    deinit {
        if outboundFD >= 0 { SystemCall.close(outboundFD) }
    }

    // MARK: - Setting up

    /// What `prepare` made: the sandbox's sockets, the outbound namespace (or
    /// -1) and the outbound side's own addresses. Blocking: call on a Dispatch thread.
    struct Prepared: Sendable {
        let sockets: Sockets
        let outboundFD: Int32
        let hostAddresses: Set<IPAddress>

        func close() {
            sockets.all.forEach(SystemCall.close)
            if outboundFD >= 0 { SystemCall.close(outboundFD) }
        }
    }

    /// Routes, nftables rules and listeners in the sandbox's network
    /// namespace, before any guest runs. Blocking.
    static func prepare(netnsFD: Int32, policy: EgressPolicy) throws(SecureExecError) -> Prepared {
        let outboundFD = try policy.outboundNetworkNamespace.map { path throws(SecureExecError) in
            try openNetworkNamespace(path)
        } ?? -1
        var made = se_egress_sockets()
        var step: UnsafePointer<CChar>? = nil
        guard se_egress_prepare(netnsFD, &made, &step) == 0 else {
            let error = errno
            if outboundFD >= 0 { SystemCall.close(outboundFD) }
            throw SystemCall.failure(
                .sandboxSetupFailed, "could not prepare egress in the sandbox",
                step: step.map { "egress: " + String(cString: $0) } ?? "egress", errno: error)
        }
        let sockets = Sockets(
            connections: [made.tcp4, made.tcp6], dnsDatagrams: [made.dns_udp4, made.dns_udp6],
            dnsStreams: [made.dns_tcp4, made.dns_tcp6])
        return Prepared(sockets: sockets, outboundFD: outboundFD, hostAddresses: localAddresses(outboundFD: outboundFD))
    }

    /// Opens `path` and checks it is a network namespace.
    static func openNetworkNamespace(_ path: String) throws(SecureExecError) -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SystemCall.failure(
                .invalidArgument, "outboundNetworkNamespace \(path.debugDescription) cannot be opened", step: "egress")
        }
        // NS_GET_NSTYPE: which kind of namespace the file is.
        let nsGetNSType = UInt(0xB7 << 8 | 3)
        guard ioctl(fd, nsGetNSType) == 0x4000_0000 /* CLONE_NEWNET */ else {
            SystemCall.close(fd)
            throw SecureExecError(
                .invalidArgument, "outboundNetworkNamespace \(path.debugDescription) is not a network namespace",
                step: "egress")
        }
        return fd
    }

    /// The addresses of the side connections go out from (never the guest's
    /// to reach by name). Blocking.
    static func localAddresses(outboundFD: Int32) -> Set<IPAddress> {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        var step: UnsafePointer<CChar>? = nil
        let status = outboundFD >= 0 ? se_netns_getifaddrs(outboundFD, &list, &step) : getifaddrs(&list)
        guard status == 0, let first = list else { return [] }
        defer { freeifaddrs(first) }
        var found = Set<IPAddress>()
        var entry: UnsafeMutablePointer<ifaddrs>? = first
        while let current = entry {
            if let address = current.pointee.ifa_addr, let ip = IPAddress(socketAddress: address) { found.insert(ip) }
            entry = current.pointee.ifa_next
        }
        return found
    }

    /// Serves `prepared`'s sockets. On failure every socket is closed.
    static func start(
        _ prepared: Prepared, policy: EgressPolicy, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(SecureExecError) -> EgressGateway {
        let gateway = EgressGateway(
            policy: policy, hostAddresses: prepared.hostAddresses, outboundFD: prepared.outboundFD, logger: logger)
        var remaining = prepared.sockets.all
        do {
            for fd in prepared.sockets.connections {
                remaining.removeFirst()
                let listener = try await ServerBootstrap(group: group)
                    .childChannelOption(.allowRemoteHalfClosure, value: true)
                    .childChannelOption(.autoRead, value: false)
                    .childChannelInitializer { [weak gateway] channel in
                        gateway?.accepted(channel) ?? channel.close()
                    }
                    .withBoundSocket(fd).get()
                gateway.keep(listener)
            }
            for fd in prepared.sockets.dnsDatagrams {
                remaining.removeFirst()
                let channel = try await DatagramBootstrap(group: group)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(DNSDatagramHandler(gateway: gateway))
                        }
                    }
                    .withBoundSocket(fd).get()
                gateway.keep(channel)
            }
            for fd in prepared.sockets.dnsStreams {
                remaining.removeFirst()
                let listener = try await ServerBootstrap(group: group)
                    .childChannelOption(.autoRead, value: false)
                    .childChannelInitializer { [weak gateway] channel in
                        guard let gateway, gateway.openDNSStream(channel) else { return channel.close() }
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(DNSStreamHandler(gateway: gateway))
                        }
                    }
                    .withBoundSocket(fd).get()
                gateway.keep(listener)
            }
        } catch {
            // NIO owns (and has closed) every descriptor it was given; the rest are ours.
            remaining.forEach(SystemCall.close)
            await gateway.close()
            throw SecureExecError(.sandboxSetupFailed, "could not serve egress: \(error)", step: "egress")
        }
        return gateway
    }

    private func keep(_ channel: any Channel) {
        let late = state.withLock { state -> Bool in
            guard !state.closed else { return true }
            state.listeners.append(channel)
            return false
        }
        if late { channel.close(promise: nil) }
    }

    // MARK: - Policy

    /// The policy in force.
    package var policy: EgressPolicy { state.withLock { $0.policy } }

    /// Denials from now on, until the gateway closes.
    package func subscribe() -> AsyncStream<EgressEvent> { events.subscribe() }

    /// Replaces the policy for new answers and connections; pins and open
    /// connections the new policy no longer allows are dropped and closed
    /// (each closed connection is reported `.revoked`).
    package func update(_ policy: EgressPolicy) async {
        let sequence = updates.add(1, ordering: .relaxed).newValue
        let hostAddresses =
            (try? await Blocking.run { [outboundFD] () throws(SecureExecError) in Self.localAddresses(outboundFD: outboundFD) })
            ?? state.withLock { $0.hostAddresses }
        let revoked = state.withLock { state -> [Outbound] in
            guard sequence > state.appliedUpdate else { return [] }
            state.appliedUpdate = sequence
            if policy.maxBytes != state.policy.maxBytes { state.byteLimitReported = false }
            state.policy = policy
            state.hostAddresses = hostAddresses
            state.hostAddressesRead = .now
            var kept: [IPAddress: [String]] = [:]
            for (address, names) in state.pins {
                let still = names.filter {
                    policy.answerDecision(name: $0, address: address, hostAddresses: hostAddresses).allowed
                }
                if !still.isEmpty { kept[address] = still }
            }
            state.pins = kept
            state.pinOrder.removeAll { kept[$0] == nil }
            var revoked: [Outbound] = []
            for (id, connection) in state.connections {
                let decision = policy.connectionDecision(
                    address: connection.address, port: connection.port,
                    pinnedNames: Set(kept[connection.address] ?? []), hostAddresses: hostAddresses)
                if !decision.allowed {
                    revoked.append(connection)
                    state.connections[id] = nil
                }
            }
            return revoked
        }
        for connection in revoked {
            report(
                .revoked, host: connection.host, address: connection.address, port: connection.port,
                detail: "the egress policy changed and no longer allows this connection; it was closed")
            connection.upstream?.close(promise: nil)
            Self.reset(connection.guest)
        }
    }

    /// Stops serving: listeners, DNS and every open connection close, and
    /// event streams finish. Idempotent.
    package func close() async {
        let (listeners, connections) = state.withLock { state -> ([any Channel], [Outbound]) in
            state.closed = true
            defer {
                state.listeners = []
                state.connections = [:]
            }
            return (state.listeners, Array(state.connections.values))
        }
        for channel in listeners { try? await channel.close() }
        for connection in connections {
            try? await connection.upstream?.close()
            try? await connection.guest.close()
        }
        events.finish()
    }

    /// Open outbound connections, for tests and the closing census.
    package var openConnections: Int { state.withLock { $0.connections.count } }

    /// The names pinned to `address`, oldest first (for tests).
    package func pinnedNames(for address: IPAddress) -> [String] { state.withLock { $0.pins[address] ?? [] } }

    /// Events the hub remembers for deduplication (for tests).
    package var recentEventCount: Int { events.recentCount }

    // MARK: - DNS

    /// Takes a DNS-over-TCP connection if fewer than the cap are open.
    fileprivate func openDNSStream(_ channel: any Channel) -> Bool {
        let taken = state.withLock { state -> Bool in
            guard !state.closed, state.dnsStreams < Self.maxDNSStreams else { return false }
            state.dnsStreams += 1
            return true
        }
        if taken {
            channel.closeFuture.whenComplete { [weak self] _ in self?.state.withLock { $0.dnsStreams -= 1 } }
        }
        return taken
    }

    /// Answers one query in a task of its own, unless too many are in flight
    /// (then it is dropped, as a busy server would). `reply` is called once,
    /// with nil for a query dropped or left unanswered.
    fileprivate func serve(_ query: [UInt8], reply: @escaping @Sendable ([UInt8]?) -> Void) {
        let (admitted, _) = queriesInFlight.add(1, ordering: .relaxed)
        // A lookup past its timeout keeps running (and its thread, for
        // .system): it counts against the cap until it really ends.
        guard admitted <= Self.maxQueriesInFlight, lookupsRunning.load(ordering: .relaxed) < Self.maxQueriesInFlight else {
            queriesInFlight.subtract(1, ordering: .relaxed)
            reply(nil)
            return
        }
        Task {
            let answer = await answer(query)
            queriesInFlight.subtract(1, ordering: .relaxed)
            reply(answer)
        }
    }

    /// The answer to one DNS message: only names the policy allows are
    /// resolved (so a guest cannot send anything to the host's resolvers by
    /// asking), and only addresses the policy allows are answered and pinned.
    func answer(_ message: [UInt8]) async -> [UInt8]? {
        guard let query = DNSMessage.parseQuery(message) else { return DNSMessage.formErr(for: message) }
        let (policy, hostAddresses) = await policyAndHostAddresses()
        guard policy.nameAllowed(query.name) else {
            report(.nameNotAllowed, host: query.name, detail: "\(query.name) is not on the egress allow-list")
            return DNSMessage.failure(query, rcode: 3)
        }
        let resolved: [IPAddress]
        do {
            resolved = try await resolve(query.name, with: policy.resolver)
        } catch {
            report(.resolutionFailed, host: query.name, detail: "resolving \(query.name) on the host failed: \(error)")
            return DNSMessage.failure(query, rcode: 2)
        }
        var allowed: [IPAddress] = []
        for address in resolved {
            let decision = policy.answerDecision(name: query.name, address: address, hostAddresses: hostAddresses)
            if decision.allowed {
                allowed.append(address)
            } else {
                report(
                    decision.reason ?? .privateAddress, host: query.name, address: address,
                    detail: "\(query.name) resolved to \(address), which the policy does not allow (\(Self.describe(address, hostAddresses)))")
            }
        }
        // An address the outbound side has no route to (IPv6 on an IPv4-only
        // host) is left out: the guest's connect to it would succeed against
        // the gateway and then fail, and clients fall back to another address
        // on a failed connect, not on a reset.
        let routable = await routableAddresses(allowed)
        for address in allowed where !routable.contains(address) {
            report(
                .upstreamUnreachable, host: query.name, address: address,
                detail: "the host has no route to \(address); it was left out of the answer for \(query.name)")
        }
        allowed = allowed.filter { routable.contains($0) }
        guard !allowed.isEmpty else {
            if resolved.isEmpty {
                report(.resolutionFailed, host: query.name, detail: "\(query.name) has no address on the host")
            }
            return DNSMessage.failure(query, rcode: 3)
        }
        pin(allowed, name: query.name)
        let family = allowed.filter { query.type == DNSMessage.typeA ? $0.isIPv4 : !$0.isIPv4 }
        let wanted = query.type == DNSMessage.typeA || query.type == DNSMessage.typeAAAA
        return DNSMessage.answer(query, addresses: wanted ? family : [], ttl: Self.answerTTL)
    }

    /// The addresses the outbound side has a route to: a UDP socket's
    /// connect looks the route up and sends nothing.
    /// Answers are remembered for `hostAddressesAge`, so a name looked up
    /// again (every new connection, for node) costs no thread hop.
    private func routableAddresses(_ addresses: [IPAddress]) async -> Set<IPAddress> {
        let now = ContinuousClock.now
        var known = Set<IPAddress>()
        let unknown = state.withLock { state in
            addresses.filter { address in
                guard let (routable, at) = state.routes[address], now - at < Self.hostAddressesAge else { return true }
                if routable { known.insert(address) }
                return false
            }
        }
        guard !unknown.isEmpty else { return known }
        let found = try? await Blocking.run { [outboundFD] () throws(SecureExecError) -> Set<IPAddress> in
            Set(unknown.filter { Self.hasRoute(to: $0, outboundFD: outboundFD) })
        }
        guard let found else { return known.union(unknown) }
        state.withLock { state in
            if state.routes.count > Self.maxPins { state.routes = [:] }
            for address in unknown { state.routes[address] = (found.contains(address), now) }
        }
        return known.union(found)
    }

    private static func hasRoute(to address: IPAddress, outboundFD: Int32) -> Bool {
        let family = address.isIPv4 ? AF_INET : AF_INET6
        var step: UnsafePointer<CChar>? = nil
        let fd = outboundFD >= 0
            ? se_netns_socket(outboundFD, family, Int32(SOCK_DGRAM.rawValue), 0, &step)
            : socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return true }
        defer { SystemCall.close(fd) }
        var storage = sockaddr_storage()
        let length = address.socketAddress(port: 9, into: &storage)
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        return connected == 0 || (errno != ENETUNREACH && errno != EHOSTUNREACH && errno != EADDRNOTAVAIL)
    }

    /// The policy, and the host's addresses, read again when they are older
    /// than `hostAddressesAge` (a read that finds none keeps the last set).
    private func policyAndHostAddresses() async -> (EgressPolicy, Set<IPAddress>) {
        let (policy, known, stale) = state.withLock {
            ($0.policy, $0.hostAddresses, ContinuousClock.now - $0.hostAddressesRead > Self.hostAddressesAge)
        }
        guard stale else { return (policy, known) }
        let fresh =
            (try? await Blocking.run { [outboundFD] () throws(SecureExecError) in Self.localAddresses(outboundFD: outboundFD) })
            ?? []
        guard !fresh.isEmpty else { return (policy, known) }
        state.withLock {
            $0.hostAddresses = fresh
            $0.hostAddressesRead = .now
        }
        return (policy, fresh)
    }

    private static func describe(_ address: IPAddress, _ hostAddresses: Set<IPAddress>) -> String {
        classify(address, hostAddresses: hostAddresses).rawValue
    }

    /// The resolver's answer, or an error after `resolveTimeout`. The
    /// resolution is not awaited past that (a `getaddrinfo` cannot be
    /// interrupted; its thread finishes on its own).
    private func resolve(_ name: String, with resolver: EgressResolver) async throws -> [IPAddress] {
        let outcome = FirstOutcome<[IPAddress]>()
        let timeout = Self.resolveTimeout
        return try await withCheckedThrowingContinuation { continuation in
            outcome.set(continuation)
            lookupsRunning.add(1, ordering: .relaxed)
            let work = Task { [self] in
                defer { lookupsRunning.subtract(1, ordering: .relaxed) }
                do {
                    outcome.finish(.success(try await resolver.resolve(name)))
                } catch {
                    outcome.finish(.failure(error))
                }
            }
            outcome.cancelWhenFinished(
                Task {
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    work.cancel()
                    outcome.finish(
                        .failure(SecureExecError(.timeout, "no answer within \(timeout)", step: "egress resolve")))
                })
        }
    }

    private func pin(_ addresses: [IPAddress], name: String) {
        state.withLock { state in
            for address in addresses {
                if state.pins[address] == nil { state.pinOrder.append(address) }
                var names = state.pins[address, default: []]
                names.removeAll { $0 == name }
                names.append(name)
                if names.count > Self.maxNamesPerPin { names.removeFirst(names.count - Self.maxNamesPerPin) }
                state.pins[address] = names
            }
            while state.pinOrder.count > Self.maxPins {
                state.pins[state.pinOrder.removeFirst()] = nil
            }
        }
    }

    // MARK: - Connections

    /// A guest's connection arrived at the gateway: find where it was going,
    /// then admit it or refuse it. On the channel's event loop.
    private func accepted(_ channel: any Channel) -> EventLoopFuture<Void> {
        guard let provider = channel as? SocketOptionProvider else { return channel.close() }
        let isIPv6 = channel.localAddress?.protocol == .inet6
        let destination: EventLoopFuture<(IPAddress, Int)?>
        if isIPv6 {
            destination = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_IPV6), name: SocketOptionName(Self.originalDestination)
            ).map { (address: sockaddr_in6) in IPAddress.from(address) }
        } else {
            destination = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_IP), name: SocketOptionName(Self.originalDestination)
            ).map { (address: sockaddr_in) in IPAddress.from(address) }
        }
        return destination.flatMap { [self] target in
            // The guest's loopback is never redirected (it is its own), so a
            // loopback destination is a connection made to the gateway's own
            // port: there is nowhere to carry it.
            guard let (address, port) = target, classify(address, hostAddresses: []) != .loopback else {
                return channel.close()
            }
            admit(channel, address: address, port: port)
            return channel.eventLoop.makeSucceededVoidFuture()
        }.flatMapError { _ in channel.close() }
    }

    private enum Verdict {
        case refuse(EgressEvent.Reason, host: String?, detail: String)
        case dial(host: String?)
        case closed
    }

    private func admit(_ channel: any Channel, address: IPAddress, port: Int) {
        let id = ObjectIdentifier(channel)
        let verdict = state.withLock { state -> Verdict in
            guard !state.closed else { return .closed }
            let policy = state.policy
            let names = state.pins[address] ?? []
            let host = names.last
            if let cap = policy.maxBytes, state.bytes >= cap {
                return .refuse(.byteLimit, host: host, detail: "the runtime has used its egress byte cap (\(cap) bytes)")
            }
            if state.connections.count >= policy.maxConnections {
                return .refuse(
                    .connectionLimit, host: host,
                    detail: "the runtime already has \(policy.maxConnections) outbound connections open")
            }
            let decision = policy.connectionDecision(
                address: address, port: port, pinnedNames: Set(names), hostAddresses: state.hostAddresses)
            guard decision.allowed else {
                let reason = decision.reason ?? .addressNotAllowed
                return .refuse(reason, host: host, detail: Self.explain(reason, host: host, address: address, port: port))
            }
            state.connections[id] = Outbound(guest: channel, upstream: nil, address: address, port: port, host: host)
            return .dial(host: host)
        }
        switch verdict {
        case .closed:
            channel.close(promise: nil)
        case .refuse(let reason, let host, let detail):
            report(reason, host: host, address: address, port: port, detail: detail)
            refuse(channel)
        case .dial(let host):
            channel.closeFuture.whenComplete { [weak self] _ in
                let upstream = self?.state.withLock { $0.connections.removeValue(forKey: id)?.upstream }
                upstream?.close(promise: nil)
            }
            Task { await self.dial(channel, id: id, address: address, port: port, host: host) }
        }
    }

    private static func explain(_ reason: EgressEvent.Reason, host: String?, address: IPAddress, port: Int) -> String {
        let target = host.map { "\($0) (\(address))" } ?? "\(address)"
        switch reason {
        case .portNotAllowed: return "port \(port) is not allowed for \(target)"
        case .privateAddress: return "\(target) is a loopback, private, link-local or host address and no IP rule names it"
        default:
            return host == nil
                ? "\(address) was not answered by the sandbox's DNS for an allowed name and no IP rule covers it"
                : "\(target):\(port) is not allowed"
        }
    }

    private func dial(_ guest: any Channel, id: ObjectIdentifier, address: IPAddress, port: Int, host: String?) async {
        let upstream: any Channel
        do {
            upstream = try await connect(address: address, port: port, on: guest.eventLoop)
        } catch {
            report(
                .upstreamUnreachable, host: host, address: address, port: port,
                detail: "connecting to \(address):\(port) from the host failed: \(error)")
            refuse(guest)
            return
        }
        // Revoked, refused or closed while dialing: nothing may pass.
        let current = state.withLock { state -> Bool in
            guard state.connections[id] != nil else { return false }
            state.connections[id]?.upstream = upstream
            return true
        }
        guard current else {
            upstream.close(promise: nil)
            return
        }
        do {
            try await ChannelGlue.join(guest, upstream) { [weak self] bytes in self?.count(bytes) ?? false }
        } catch {
            upstream.close(promise: nil)
            guest.close(promise: nil)
        }
    }

    /// A channel on the outbound side, connected to `address:port`.
    private func connect(address: IPAddress, port: Int, on eventLoop: any EventLoop) async throws -> any Channel {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(Int64(Self.connectTimeout.components.seconds)))
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: false)
        guard outboundFD >= 0 else {
            return try await bootstrap.connect(to: SocketAddress(ipAddress: address.description, port: port)).get()
        }
        let fd = try await NetnsDialer(netnsFD: outboundFD).connect(
            host: address.description, port: port, timeout: Self.connectTimeout)
        return try await bootstrap.withConnectedSocket(fd).get()
    }

    /// Counts bytes passing either way; past the cap every connection closes.
    private func count(_ bytes: Int) -> Bool {
        let exceeded = state.withLock { state -> (cap: Int, connections: [Outbound], first: Bool)? in
            state.bytes += bytes
            guard let cap = state.policy.maxBytes, state.bytes > cap else { return nil }
            let all = Array(state.connections.values)
            state.connections = [:]
            defer { state.byteLimitReported = true }
            return (cap, all, !state.byteLimitReported)
        }
        guard let exceeded else { return true }
        if exceeded.first {
            report(.byteLimit, detail: "the runtime used its egress byte cap (\(exceeded.cap) bytes); its connections were closed")
        }
        for connection in exceeded.connections {
            connection.upstream?.close(promise: nil)
            Self.reset(connection.guest)
        }
        return false
    }

    /// Ends a connection the gateway will not carry. The guest's connect has
    /// already succeeded (the kernel completed it), so it learns at its first
    /// exchange: the connection is reset once the guest has written (or
    /// closed), or after `refusalWait` for a client that waits to be spoken
    /// to. Node's fetch sees ECONNRESET then; a reset or close before it had
    /// written sometimes left it waiting for ever.
    private func refuse(_ channel: any Channel) {
        // Each waiting refusal holds a descriptor: past the cap, reset at once.
        let waits = state.withLock { state -> Bool in
            guard state.refusing < Self.maxRefusing else { return false }
            state.refusing += 1
            return true
        }
        guard waits else {
            Self.reset(channel)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in self?.state.withLock { $0.refusing -= 1 } }
        channel.eventLoop.execute {
            guard (try? channel.pipeline.syncOperations.addHandler(RefusalHandler())) != nil else {
                channel.close(promise: nil)
                return
            }
            channel.eventLoop.scheduleTask(in: Self.refusalWait) { Self.reset(channel) }
        }
    }

    static let refusalWait = TimeAmount.seconds(2)

    /// Closes an established connection with a reset, so the guest sees
    /// ECONNRESET at once rather than an orderly end of data.
    static func resetNow(_ channel: any Channel) { reset(channel) }

    private static func reset(_ channel: any Channel) {
        guard let provider = channel as? SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: - Events

    private func report(
        _ reason: EgressEvent.Reason, host: String? = nil, address: IPAddress? = nil, port: Int? = nil, detail: String
    ) {
        let event = EgressEvent(reason: reason, host: host, address: address?.description, port: port, detail: detail)
        for admitted in events.admit(event) {
            logger.debug("\(admitted)")
            events.publish(admitted)
        }
    }
}

/// A continuation resumed by whichever outcome comes first.
private final class FirstOutcome<Value: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<Value, any Error>?, timer: Task<Void, Never>?, done: Bool)>(
        (nil, nil, false))

    func set(_ continuation: CheckedContinuation<Value, any Error>) { state.withLock { $0.continuation = continuation } }

    /// `timer` is cancelled as soon as an outcome is known, so it does not linger.
    func cancelWhenFinished(_ timer: Task<Void, Never>) {
        let done = state.withLock { state -> Bool in
            if !state.done { state.timer = timer }
            return state.done
        }
        if done { timer.cancel() }
    }

    func finish(_ result: Result<Value, any Error>) {
        let (continuation, timer) = state.withLock { state in
            state.done = true
            defer {
                state.continuation = nil
                state.timer = nil
            }
            return (state.continuation, state.timer)
        }
        timer?.cancel()
        continuation?.resume(with: result)
    }
}

/// Fans egress events out to every subscriber; each keeps the newest 1,024
/// it has not read.
package final class EgressEventHub: Sendable {
    private struct Subscribers {
        var next = 0
        var continuations: [Int: AsyncStream<EgressEvent>.Continuation] = [:]
        var finished = false
    }
    private let subscribers = Mutex(Subscribers())
    /// Events published in the last `repeatWindow`, oldest first: one lookup
    /// asks for A and AAAA and clients retry, so the same refusal comes in
    /// bursts; and a guest refused in a loop must not flood the host's log.
    private struct Recent {
        var seen: [EgressEvent: ContinuousClock.Instant] = [:]
        var order: [(event: EgressEvent, at: ContinuousClock.Instant)] = []
        var head = 0
        /// Per reason, events published in the window.
        var perReason: [EgressEvent.Reason: Int] = [:]
        /// Left out since the last summary, and when the first of them was.
        var dropped = 0
        var droppedSince: ContinuousClock.Instant?
    }
    private let recent = Mutex(Recent())
    static let repeatWindow: Duration = .seconds(1)
    /// Distinct events of one reason published per `repeatWindow`; more are
    /// left out and counted in an `.eventsDropped` event. What the host's
    /// own action or a cap causes (`.revoked`, `.byteLimit`) is never left out.
    package static let maxPerWindow = 100

    /// Events remembered from the last window.
    var recentCount: Int { recent.withLock { $0.order.count - $0.head } }

    /// What to publish for `event`: nothing (a repeat within the window, or
    /// past its reason's cap), the event, or a summary of the left-out ones
    /// first and then the event.
    func admit(_ event: EgressEvent) -> [EgressEvent] {
        let now = ContinuousClock.now
        return recent.withLock { recent in
            while recent.head < recent.order.count, now - recent.order[recent.head].at >= Self.repeatWindow {
                let old = recent.order[recent.head].event
                recent.seen[old] = nil
                recent.perReason[old.reason, default: 1] -= 1
                recent.head += 1
            }
            if recent.head > 1024, recent.head * 2 > recent.order.count {
                recent.order.removeFirst(recent.head)
                recent.head = 0
            }
            guard recent.seen[event] == nil else { return [] }
            let exempt = event.reason == .revoked || event.reason == .byteLimit
            if !exempt, recent.perReason[event.reason, default: 0] >= Self.maxPerWindow {
                recent.dropped += 1
                if recent.droppedSince == nil { recent.droppedSince = now }
                return []
            }
            recent.seen[event] = now
            recent.order.append((event, now))
            recent.perReason[event.reason, default: 0] += 1
            guard recent.dropped > 0, let since = recent.droppedSince, now - since >= Self.repeatWindow || exempt else {
                return [event]
            }
            let summary = EgressEvent(
                reason: .eventsDropped, host: nil, address: nil, port: nil,
                detail: "\(recent.dropped) refusals were not reported (more than \(Self.maxPerWindow) of one kind in a second)")
            recent.dropped = 0
            recent.droppedSince = nil
            return [summary, event]
        }
    }

    func subscribe() -> AsyncStream<EgressEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: EgressEvent.self, bufferingPolicy: .bufferingNewest(1024))
        let id = subscribers.withLock { state -> Int? in
            guard !state.finished else { return nil }
            defer { state.next += 1 }
            state.continuations[state.next] = continuation
            return state.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.subscribers.withLock { _ = $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    func publish(_ event: EgressEvent) {
        for continuation in subscribers.withLock({ Array($0.continuations.values) }) { continuation.yield(event) }
    }

    func finish() {
        let all = subscribers.withLock { state -> [AsyncStream<EgressEvent>.Continuation] in
            state.finished = true
            defer { state.continuations = [:] }
            return Array(state.continuations.values)
        }
        all.forEach { $0.finish() }
    }
}

/// On a refused connection: the guest's first bytes (or its close) reset it.
private final class RefusalHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    // The channel may not be active yet when the refusal is decided (its
    // initializer is still running): read once it is.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.read() }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        EgressGateway.resetNow(context.channel)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { EgressGateway.resetNow(context.channel) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// DNS over UDP: each datagram is one query, answered to its sender.
private final class DNSDatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let gateway: EgressGateway

    init(gateway: EgressGateway) { self.gateway = gateway }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let channel = context.channel
        gateway.serve(Array(envelope.data.readableBytesView)) { answer in
            guard let answer else { return }
            channel.writeAndFlush(
                AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: answer)), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A datagram error (the querier went away) concerns that datagram only.
    }
}

/// DNS over TCP: messages framed by a two-byte length.
///
/// Reads only while fewer than `maxInFlight` of its queries are being
/// answered and the guest takes the answers (the channel is writable), so a
/// guest that writes queries and never reads costs the supervisor nothing
/// beyond one socket buffer; a connection idle for `idle` is closed.
private final class DNSStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let maxInFlight = 4
    static let idle = TimeAmount.seconds(10)

    private let gateway: EgressGateway
    private var pending = ByteBuffer()
    private var inFlight = 0
    private var context: ChannelHandlerContext?
    private var idleTimer: Scheduled<Void>?

    init(gateway: EgressGateway) { self.gateway = gateway }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armIdleTimer()
        if context.channel.isActive { context.read() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        // Bounded: reads stop while `maxInFlight` queries are out, so this
        // holds at most one read's bytes beyond them.
        pending.writeBuffer(&chunk)
        dispatchQueries()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readIfRoom()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        readIfRoom()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func dispatchQueries() {
        guard let context else { return }
        while inFlight < Self.maxInFlight, let length = pending.getInteger(at: pending.readerIndex, as: UInt16.self),
            pending.readableBytes >= 2 + Int(length)
        {
            pending.moveReaderIndex(forwardBy: 2)
            let message = pending.readBytes(length: Int(length)) ?? []
            inFlight += 1
            armIdleTimer()
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            gateway.serve(message) { answer in
                eventLoop.execute { handler.value.answered(answer) }
            }
        }
        pending.discardReadBytes()
    }

    private func answered(_ answer: [UInt8]?) {
        inFlight -= 1
        guard let context else { return }
        if let answer {
            var framed = context.channel.allocator.buffer(capacity: answer.count + 2)
            framed.writeInteger(UInt16(truncatingIfNeeded: answer.count))
            framed.writeBytes(answer)
            context.writeAndFlush(wrapOutboundOut(framed), promise: nil)
        }
        dispatchQueries()
        readIfRoom()
    }

    private func readIfRoom() {
        guard let context, inFlight < Self.maxInFlight, context.channel.isWritable else { return }
        context.read()
    }

    private func armIdleTimer() {
        guard let context else { return }
        idleTimer?.cancel()
        let channel = context.channel
        idleTimer = context.eventLoop.scheduleTask(in: Self.idle) { channel.close(promise: nil) }
    }
}
