import AsyncAlgorithms
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A request body: nothing, bytes, or chunks produced while sending
/// (sent with chunked transfer-encoding).
package enum GuestRequestBody: Sendable {
    case none
    case bytes([UInt8])
    /// Calls `write` once per chunk, in order; `write` suspends while the guest is slow.
    case stream(@Sendable (_ write: @Sendable ([UInt8]) async throws -> Void) async throws -> Void)

    var isReplayable: Bool {
        if case .stream = self { return false }
        return true
    }
}

/// A response as it arrives: status and headers at once, the body as chunks.
package struct GuestResponse: Sendable {
    package var status: Int
    package var reason: String
    package var headers: [(String, String)]
    /// Body chunks in order as the guest sends them; ends at the response's
    /// end, throws `SecureExecError` if the connection breaks first.
    package var body: GuestResponseBody
}

/// The body of a `GuestResponse`, with backpressure: the guest is read only
/// as fast as the caller iterates.
package struct GuestResponseBody: AsyncSequence, Sendable {
    package typealias Element = [UInt8]
    let events: AsyncThrowingChannel<[UInt8], any Error>

    package struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingChannel<[UInt8], any Error>.AsyncIterator
        package mutating func next() async throws -> [UInt8]? {
            do {
                return try await base.next()
            } catch let error as SecureExecError {
                throw error
            } catch {
                throw SecureExecError(.ioFailed, "reading the response failed: \(error)", step: "fetch")
            }
        }
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: events.makeAsyncIterator()) }
}
