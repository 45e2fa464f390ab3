import TestSupport
import Testing

/// The large-body tests (Networking) are only as good as their pattern check:
/// it must catch a flipped byte and a chunk delivered out of place.
@Suite("Transfer pattern check", .timeLimit(.minutes(2)))
struct TransferPatternTests {
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
