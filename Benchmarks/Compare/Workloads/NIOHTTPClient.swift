import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain SwiftNIO HTTP/1.1 client on one kept-alive connection: the same
/// stack SecureExec's `fetch` is built on (NIOPosix + NIOHTTP1, on NIO's
/// shared event loops), without SecureExec's pool, validation or dialing.
/// It is the "same client" the fetch-latency goal compares against.
public enum NIOHTTPClient {
    /// One connection's requests; use it only inside `withConnection`.
    public struct Connection: ~Copyable {
        fileprivate var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
        fileprivate let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>

        /// GET `path`; returns the status once the whole body arrived.
        public mutating func get(_ path: String, isolation: isolated (any Actor)? = #isolation) async throws -> Int {
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
            head.headers.add(name: "host", value: "localhost")
            try await outbound.write(contentsOf: [.head(head), .end(nil)])
            var status: Int?
            while let part = try await inbound.next(isolation: isolation) {
                switch part {
                case .head(let response): status = Int(response.status.code)
                case .body: break
                case .end: return status ?? 0
                }
            }
            throw BenchmarkFailure("the server closed the connection")
        }
    }

    /// Adopts a connected socket (from `LoopbackDialer`) and runs `body` on it; closes it afterwards.
    public static func withConnection<Result: Sendable>(
        isolation: isolated (any Actor)? = #isolation, socket: Int32, _ body: (inout Connection) async throws -> Result
    ) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .withConnectedSocket(socket) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose(isolation: isolation) { inbound, outbound in
            var connection = Connection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            return try await body(&connection)
        }
    }
}
