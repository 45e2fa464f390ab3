import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real host listener whose every connection is piped to a guest's port.
///
/// Each accepted connection is dialed into the sandbox's network namespace
/// and the two sockets are glued byte for byte in both directions, half-close
/// respected, so HTTP, server-sent events and WebSocket upgrades pass through
/// untouched. `close()` stops listening and closes every piped connection.
///
/// Concurrency: the listener and every piped connection live on NIO's event
/// loops; `connections` (a Mutex-guarded set) is what `close` ends.
package final class PortExposure: Sendable {
    package let hostAddress: String
    package let hostPort: Int
    package let guestPort: Int
    private let listener: any Channel
    private let connections: ConnectionSet

    private init(listener: any Channel, guestPort: Int, connections: ConnectionSet) {
        self.listener = listener
        self.guestPort = guestPort
        self.connections = connections
        self.hostAddress = listener.localAddress?.ipAddress ?? "?"
        self.hostPort = listener.localAddress?.port ?? 0
    }

    /// Binds `host:port` (port 0: the kernel picks) and starts piping.
    package static func open(
        host: String, port: Int, guestPort: Int, dialer: NetnsDialer, connectTimeout: Duration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(SecureExecError) -> PortExposure {
        let connections = ConnectionSet()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                connections.insert(client)
                client.closeFuture.whenComplete { _ in connections.remove(client) }
                let promise = client.eventLoop.makePromise(of: Void.self)
                promise.completeWithTask {
                    do {
                        let fd = try await dialer.connectLoopback(port: guestPort, timeout: connectTimeout)
                        let guest = try await ClientBootstrap(group: client.eventLoop)
                            .channelOption(.allowRemoteHalfClosure, value: true)
                            .channelOption(.autoRead, value: false)
                            .withConnectedSocket(fd).get()
                        connections.insert(guest)
                        guest.closeFuture.whenComplete { _ in connections.remove(guest) }
                        try await ChannelGlue.join(client, guest)
                    } catch {
                        // The guest is not there (or went away): drop the client's connection.
                        client.close(promise: nil)
                    }
                }
                return client.eventLoop.makeSucceededVoidFuture()
            }
        do {
            let listener = try await bootstrap.bind(host: host, port: port).get()
            return PortExposure(listener: listener, guestPort: guestPort, connections: connections)
        } catch {
            let errnoValue = (error as? IOError)?.errnoCode
            throw SecureExecError(
                .ioFailed, "could not listen on \(host):\(port): \(error)", step: "bind", errno: errnoValue)
        }
    }

    /// Stops listening and closes every connection piped through. Idempotent.
    package func close() async {
        try? await listener.close()
        for channel in connections.drain() { try? await channel.close() }
    }
}

/// The open client and guest channels of one exposure.
private final class ConnectionSet: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let closed = Mutex(false)

    func insert(_ channel: any Channel) {
        let refused = closed.withLock { $0 }
        if refused {
            channel.close(promise: nil)
            return
        }
        channels.withLock { $0[ObjectIdentifier(channel)] = channel }
    }

    func remove(_ channel: any Channel) { channels.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) } }

    func drain() -> [any Channel] {
        closed.withLock { $0 = true }
        return channels.withLock { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
    }
}
