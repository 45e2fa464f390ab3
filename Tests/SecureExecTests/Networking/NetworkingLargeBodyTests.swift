import SecureExec
import Synchronization
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
    "Networking: large bodies", .serialized, .enabled(if: Privileges.isRoot || Privileges.isCI),
    .timeLimit(.minutes(2)))
struct NetworkingLargeBodyTests {
    static let size = 256 << 20
    static let memoryBudget = 96 << 20

    @Test("a 256 MiB response streams to the host with bounded memory, every byte as sent")
    func download() async throws {
        try await withMeasuredNetworkRuntime { runtime in
            _ = try await runtime.startServer(NetworkingGuests.httpServer(), port: 3000)
            var memory = ResidentMemoryWatch()
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
            let end = ResidentMemory.current()
            let growth = memory.growthToPeak()

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
            var memory = ResidentMemoryWatch()
            let chunks = TransferPattern.Chunks(total: Self.size, chunkSize: 1 << 20)
            let peak = PeakResidentMemory()
            let response = try await runtime.fetch(
                3000, path: "/upload", method: "POST", bodyStream: SampledChunks(base: chunks, peak: peak),
                timeout: .seconds(100))
            let end = ResidentMemory.current()
            let growth = memory.growthToPeak()
            let peakWhileSending = peak.value

            #expect(response.status == 200)
            #expect(response.bodyText == #"{"bytes":\#(Self.size),"mismatch":-1}"#)
            #expect(end - memory.start < Self.memoryBudget, "VmRSS grew by \((end - memory.start) >> 20) MiB")
            #expect(growth < Self.memoryBudget, "VmRSS ended \(growth >> 20) MiB above its start")
            #expect(peakWhileSending - memory.start < Self.memoryBudget, "VmRSS peaked \((peakWhileSending - memory.start) >> 20) MiB above its start while sending")
            print("[networking] upload: VmRSS growth \((max(peakWhileSending, end) - memory.start) >> 20) MiB at peak")
        }
    }
}

/// The highest VmRSS sampled so far.
private final class PeakResidentMemory: Sendable {
    private let peak = Mutex(0)
    var value: Int { peak.withLock { $0 } }
    func sample() {
        let now = ResidentMemory.current()
        peak.withLock { $0 = max($0, now) }
    }
}

/// Wraps the upload's chunks and samples VmRSS every 8 chunks as they are pulled.
private struct SampledChunks: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let base: TransferPattern.Chunks
    let peak: PeakResidentMemory

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: TransferPattern.Chunks.AsyncIterator
        let peak: PeakResidentMemory
        var pulled = 0

        mutating func next() async -> [UInt8]? {
            pulled += 1
            if pulled % 8 == 0 { peak.sample() }
            return await base.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), peak: peak) }
}

/// The large-body tests are only as good as their pattern check: it must
/// catch a flipped byte and a chunk delivered out of place.
@Suite("Networking: transfer pattern check", .timeLimit(.minutes(2)))
struct NetworkingTransferPatternTests {
    @Test("the check accepts the pattern in any chunking and pins the first wrong byte")
    func check() {
        var whole = TransferPattern.Check()
        for (offset, count) in [(0, 1), (1, 4095), (4096, 1 << 20), ((1 << 20) + 4096, 70000)] {
            whole.consume(TransferPattern.chunk(offset: offset, count: count))
        }
        #expect(whole.count == (1 << 20) + 4096 + 70000)
        #expect(whole.firstMismatch == nil)
        #expect(TransferPattern.chunk(offset: 3 << 20, count: 10) == (0..<10).map { TransferPattern.byte(at: (3 << 20) + $0) })

        var flipped = TransferPattern.chunk(offset: 0, count: 3 << 20)
        flipped[2_500_000] ^= 1
        var flippedCheck = TransferPattern.Check()
        flippedCheck.consume(flipped)
        #expect(flippedCheck.firstMismatch == 2_500_000)

        // Two 64 KiB transport chunks swapped.
        var swapped = TransferPattern.Check()
        swapped.consume(TransferPattern.chunk(offset: 65536, count: 65536))
        swapped.consume(TransferPattern.chunk(offset: 0, count: 65536))
        #expect(swapped.firstMismatch == 0)
    }
}
