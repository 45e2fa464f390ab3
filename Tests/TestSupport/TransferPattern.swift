#if canImport(Glibc)
import Glibc
#endif

/// The bytes of the large-body tests: byte `i` is `i * 31 + 7 + i / 4096`
/// (mod 256). The 4 KiB term makes the stream non-periodic at the scale of
/// transport chunks (its period is 1 MiB), so a dropped, repeated or
/// reordered chunk is caught, not only a flipped byte. Both sides compute it
/// from one precomputed period and compare with memcmp (a per-byte loop in a
/// debug build would take longer than the transfer); neither side holds the stream.
public enum TransferPattern {
    public static func byte(at index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ 7 &+ (index >> 12)) }

    public static let periodLength = 1 << 20
    /// The first `periodLength` bytes; the stream repeats them.
    public static let period: [UInt8] = (0..<periodLength).map(byte(at:))

    /// The `count` bytes starting at stream offset `offset`.
    public static func chunk(offset: Int, count: Int) -> [UInt8] {
        if offset % periodLength == 0 && count == periodLength { return period }
        var chunk: [UInt8] = []
        chunk.reserveCapacity(count)
        while chunk.count < count {
            let start = (offset + chunk.count) % periodLength
            chunk += period[start..<(start + Swift.min(count - chunk.count, periodLength - start))]
        }
        return chunk
    }

    /// The same pattern in JavaScript: `pattern(offset, length)` returns a Buffer,
    /// `firstMismatch(offset, chunk)` the stream index of the first wrong byte or -1.
    public static let javaScript = """
        const PERIOD = \(periodLength);
        const period = Buffer.allocUnsafe(PERIOD);
        for (let i = 0; i < PERIOD; i++) period[i] = (i * 31 + 7 + Math.floor(i / 4096)) & 0xff;
        function pattern(offset, length) {
          if (offset % PERIOD === 0 && length === PERIOD) return period;
          const chunk = Buffer.allocUnsafe(length);
          for (let j = 0; j < length;) {
            const start = (offset + j) % PERIOD;
            const take = Math.min(length - j, PERIOD - start);
            period.copy(chunk, j, start, start + take);
            j += take;
          }
          return chunk;
        }
        function firstMismatch(offset, chunk) {
          for (let j = 0; j < chunk.length;) {
            const start = (offset + j) % PERIOD;
            const take = Math.min(chunk.length - j, PERIOD - start);
            if (!chunk.subarray(j, j + take).equals(period.subarray(start, start + take))) {
              for (let k = 0; k < take; k++) if (chunk[j + k] !== period[start + k]) return offset + j + k;
            }
            j += take;
          }
          return -1;
        }
        """

    /// Checks a stream against the pattern as it arrives, holding nothing but counters.
    public struct Check: Sendable {
        public private(set) var count = 0
        public private(set) var firstMismatch: Int?

        public init() {}

        public mutating func consume(_ chunk: [UInt8]) {
            if firstMismatch == nil { firstMismatch = Self.firstMismatch(chunk, at: count) }
            count += chunk.count
        }

        private static func firstMismatch(_ chunk: [UInt8], at offset: Int) -> Int? {
            chunk.withUnsafeBytes { chunk in
                TransferPattern.period.withUnsafeBytes { period in
                    var index = 0
                    while index < chunk.count {
                        let start = (offset + index) % periodLength
                        let take = Swift.min(chunk.count - index, periodLength - start)
                        if memcmp(chunk.baseAddress! + index, period.baseAddress! + start, take) != 0 {
                            let wrong = (0..<take).first { chunk[index + $0] != period[start + $0] }!
                            return offset + index + wrong
                        }
                        index += take
                    }
                    return nil
                }
            }
        }
    }

    /// `total` bytes of the pattern in chunks of `chunkSize`, each made only when asked for.
    public struct Chunks: AsyncSequence, Sendable {
        public typealias Element = [UInt8]
        public let total: Int
        public let chunkSize: Int

        public init(total: Int, chunkSize: Int) {
            self.total = total
            self.chunkSize = chunkSize
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            let total: Int
            let chunkSize: Int
            var offset = 0

            public mutating func next() async -> [UInt8]? {
                guard offset < total else { return nil }
                let count = Swift.min(chunkSize, total - offset)
                defer { offset += count }
                return TransferPattern.chunk(offset: offset, count: count)
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(total: total, chunkSize: chunkSize) }
    }
}
