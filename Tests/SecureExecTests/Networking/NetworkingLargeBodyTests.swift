import SecureExec
import Synchronization
import TestSupport
import Testing

/// 256 MiB each way between host and guest, streamed.
///
/// The supervisor must never hold a whole body: a streamed response is read
/// from the guest only as fast as the caller iterates, and a streamed upload
/// is pulled from the caller's sequence only as fast as the guest reads. So
/// this process's resident memory must stay far below the body's size; it is
/// sampled as the bytes go and must grow by less than 96 MiB. Both sides
/// check every byte against `TransferPattern` as it passes.
///
/// Serialized: the two transfers would otherwise share the memory budget
/// each of them is measured against.
@Suite(
    "Networking: large bodies", .serialized, .needsRoot,
    .timeLimit(.minutes(2)))
struct NetworkingLargeBodyTests {
    static let size = 256 << 20
    static let memoryBudget = 96 << 20

    @Test("a 256 MiB response streams to the host with bounded memory, every byte as sent")
    func download() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let memory = ResidentMemoryWatch()
            let (status, length, check, chunks) = try await runtime.fetchStreaming(
                3000, path: "/download?bytes=\(Self.size)", timeout: .seconds(100)
            ) { response in
                var check = TransferPattern.Check()
                var chunks = 0
                var sinceSample = 0
                for try await chunk in response.body {
                    check.consume(chunk)
                    chunks += 1
                    sinceSample += chunk.count
                    if sinceSample >= 8 << 20 {
                        sinceSample = 0
                        memory.sample()
                    }
                }
                return (response.status, response.header("content-length"), check, chunks)
            }
            let end = memory.sample()
            let growth = memory.peakGrowth

            #expect(status == 200)
            #expect(length == "\(Self.size)")
            #expect(check.count == Self.size)
            #expect(check.firstMismatch == nil, "first wrong byte at offset \(check.firstMismatch ?? -1)")
            #expect(chunks > 1, "the body arrived in \(chunks) chunk(s): it was not streamed")
            #expect(end - memory.start < Self.memoryBudget, "VmRSS grew by \((end - memory.start) >> 20) MiB")
            #expect(growth < Self.memoryBudget, "VmRSS peaked \(growth >> 20) MiB above its start")
            print("[networking] download: \(chunks) chunks, VmRSS growth \(growth >> 20) MiB at peak")
        }
    }

    @Test("a 256 MiB upload streams to the guest with bounded memory, every byte as sent")
    func upload() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            let memory = ResidentMemoryWatch()
            let chunks = TransferPattern.Chunks(total: Self.size, chunkSize: 1 << 20)
            let whileSending = ResidentMemoryWatch()
            let response = try await runtime.fetch(
                3000, path: "/upload", method: "POST", bodyStream: SampledChunks(base: chunks, memory: whileSending),
                timeout: .seconds(100))
            let end = memory.sample()
            let growth = memory.peakGrowth
            let peakWhileSending = whileSending.peak

            #expect(response.status == 200)
            #expect(response.bodyText == #"{"bytes":\#(Self.size),"mismatch":-1}"#)
            #expect(end - memory.start < Self.memoryBudget, "VmRSS grew by \((end - memory.start) >> 20) MiB")
            #expect(growth < Self.memoryBudget, "VmRSS ended \(growth >> 20) MiB above its start")
            #expect(peakWhileSending - memory.start < Self.memoryBudget, "VmRSS peaked \((peakWhileSending - memory.start) >> 20) MiB above its start while sending")
            print("[networking] upload: VmRSS growth \((max(peakWhileSending, end) - memory.start) >> 20) MiB at peak")
        }
    }
}

/// Wraps the upload's chunks and samples VmRSS every 8 chunks as they are pulled.
private struct SampledChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let base: TransferPattern.Chunks
    let memory: ResidentMemoryWatch

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: TransferPattern.Chunks.AsyncIterator
        let memory: ResidentMemoryWatch
        var pulled = 0

        mutating func next() async -> [UInt8]? {
            pulled += 1
            if pulled % 8 == 0 { memory.sample() }
            return await base.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), memory: memory) }
}
