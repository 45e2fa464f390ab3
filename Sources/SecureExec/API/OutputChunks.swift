/// A guest process's stdout or stderr as an asynchronous sequence of raw
/// byte chunks, in the order they were written: `process.stdout` and
/// `process.stderr`.
///
/// A stream is delivered here when `spawn` was given no callback for it;
/// with a callback, the sequence is empty. Until a reader starts (an
/// iterator is made, e.g. by `for await`), up to 1 MiB is kept for it and
/// later output is dropped (`isTruncated` says so), so a guest nobody reads
/// never blocks. Once a reader started, the guest waits while 1 MiB is unread, as a writer to a full pipe does:
/// backpressure instead of a backlog; when the iterator is dropped (a loop
/// left with `break`), output is kept and dropped again as before a reader.
/// The sequence ends after the guest's last byte, once the stream is
/// closed. Read it from one task at a time; a cancelled reader's `next()`
/// returns nil.
public struct OutputChunks: AsyncSequence, Sendable {
    /// One chunk, as the guest wrote it (its size is the kernel's, not a line).
    public typealias Element = [UInt8]

    let queue: ChunkQueue
    let record: GuestRecord
    let stream: Int32
    let delivered: Bool

    /// True if bytes of this stream were dropped: past
    /// `Limits.outputBytesPerStream`, or past 1 MiB before a reader started.
    public var isTruncated: Bool { record.truncated(stream: stream) || (delivered && queue.dropped) }

    /// The sequence's iterator.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: ChunkQueue?
        /// Ends the reading when the last copy of this iterator goes.
        let reader: Reader?

        /// The next chunk; nil at the end of the stream, for a stream given to
        /// a callback, or when the reading task is cancelled.
        public mutating func next() async -> [UInt8]? {
            await queue?.next()
        }
    }

    /// An iterator over the chunks not read yet. Making one starts the
    /// reading: from then on nothing is dropped, and the guest waits for it.
    public func makeAsyncIterator() -> AsyncIterator {
        guard delivered else { return AsyncIterator(queue: nil, reader: nil) }
        queue.startReading()
        return AsyncIterator(queue: queue, reader: Reader(queue: queue))
    }

    /// Lives as long as an iterator: when it goes, the guest no longer waits
    /// for a reader.
    final class Reader: Sendable {
        let queue: ChunkQueue
        init(queue: ChunkQueue) { self.queue = queue }
        deinit { queue.stopReading() }
    }
}
