import CNamespaces
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// File operations on the sandbox's writable areas, performed inside the
/// sandbox by a child of init that has become the guest (see fileops.c).
extension Sandbox {
    /// The areas file operations may touch: the workspace, /tmp and read-write mounts.
    package var writableAreas: [String] { configuration.writableAreas }

    /// Checks that `path` is absolute, normalized and inside a writable area.
    package func validateGuestPath(_ path: String) throws(SecureExecError) {
        guard GuestPath.isNormalizedAbsolute(path), path != "/" else {
            throw SecureExecError(
                .invalidArgument, "\(path.debugDescription) is not an absolute, normalized guest path", step: "file path")
        }
        guard writableAreas.contains(where: { GuestPath.isInside(path, area: $0) }) else {
            throw SecureExecError(
                .invalidArgument,
                "\(path) is outside the sandbox's writable areas (\(writableAreas.joined(separator: ", ")))",
                step: "file path")
        }
    }

    /// Reads a whole file (at most `maxBytes`).
    package func readFile(_ path: String, maxBytes: Int) async throws(SecureExecError) -> [UInt8] {
        guard maxBytes >= 0 else {
            throw SecureExecError(.invalidArgument, "maxBytes must not be negative, got \(maxBytes)", step: "read file")
        }
        try validateGuestPath(path)
        let (mine, waiter) = try startWithPair(InitProtocol.fileRecords("read", path), step: "read file")
        let bytes = await Self.drain(mine, limit: maxBytes, queue: queue)
        let result = await waiter()
        if result != 0 && result != EPIPE { throw Self.fileError(result, "reading \(path)") }
        guard let bytes else {
            throw SecureExecError(.responseTooLarge, "\(path) is larger than maxBytes (\(maxBytes))", step: "read file")
        }
        return bytes
    }

    /// Writes a file from chunks, creating parent directories, replacing what was there.
    ///
    /// All or nothing: init's helper fills a temporary file beside `path` and
    /// renames it over `path` only on the commit frame sent after the last
    /// chunk (se_protocol.h, "The data of op=write"). When the source throws,
    /// no commit is sent, the old file stays as it was, and the source's own
    /// error is what the caller gets (as `underlyingError` unless it is a
    /// `SecureExecError` itself).
    package func writeFile(_ path: String, chunks: GuestRequestBody) async throws(SecureExecError) {
        try validateGuestPath(path)
        let (mine, waiter) = try startWithPair(InitProtocol.fileRecords("write", path), step: "write file")
        var sourceError: SecureExecError?
        var sendError: SecureExecError?
        do throws(SecureExecError) {
            switch chunks {
            case .none: break
            case .bytes(let bytes): try await Self.sendFrames(bytes, to: mine, queue: queue)
            case .stream(let produce):
                do {
                    try await produce { chunk in
                        do throws(SecureExecError) {
                            try await Self.sendFrames(chunk, to: mine, queue: self.queue)
                        } catch {
                            throw SendFailure(error: error)
                        }
                    }
                } catch let failure as SendFailure {
                    throw failure.error
                } catch let error as SecureExecError {
                    sourceError = error
                } catch {
                    sourceError = SecureExecError(
                        .ioFailed, "the data source failed: \(error)", step: "write file", underlyingError: error)
                }
            }
            if sourceError == nil { try await Self.send([0, 0, 0, 0], to: mine, queue: queue) }
        } catch {
            sendError = error
        }
        // End of data: the helper sees EOF (shutdown, not just close: the
        // timeout holds a second descriptor of this socket). Without the
        // commit frame before it, it abandons the write.
        shutdown(mine, Int32(SHUT_WR))
        SystemCall.close(mine)
        let result = await waiter()
        if let sourceError { throw sourceError }
        if result != 0 { throw Self.fileError(result, "writing \(path)") }
        if let sendError { throw sendError }
    }

    /// A send that failed inside the caller's source, told apart from the source's own errors.
    private struct SendFailure: Error {
        let error: SecureExecError
    }

    package func listDirectory(_ path: String) async throws(SecureExecError) -> [DirectoryEntry] {
        try validateGuestPath(path)
        let (mine, waiter) = try startWithPair(InitProtocol.fileRecords("list", path), step: "read directory")
        let listing = await Self.drain(mine, limit: 64 << 20, queue: queue)
        let result = await waiter()
        if result != 0 && !(listing == nil && result == EPIPE) { throw Self.fileError(result, "listing \(path)") }
        // A listing too large to hold is an error, never an empty directory:
        // a guest must not be able to hide its files from a host that looks.
        guard let bytes = listing else {
            throw SecureExecError(
                .responseTooLarge, "the listing of \(path) is larger than 64 MiB", step: "read directory")
        }
        var entries: [DirectoryEntry] = []
        let fields = bytes.split(separator: 0, omittingEmptySubsequences: false)
        var index = 0
        while index + 1 < fields.count {
            let kind: DirectoryEntry.Kind =
                switch fields[index].first {
                case UInt8(ascii: "d"): .directory
                case UInt8(ascii: "f"): .file
                case UInt8(ascii: "l"): .symlink
                default: .other
                }
            entries.append(DirectoryEntry(name: String(decoding: fields[index + 1], as: UTF8.self), kind: kind))
            index += 2
        }
        return entries.sorted { $0.name < $1.name }
    }

    package func removeItem(_ path: String) async throws(SecureExecError) {
        try await simple("remove", path)
    }

    package func makeDirectory(_ path: String) async throws(SecureExecError) {
        try await simple("mkdir", path)
    }

    private func simple(_ operation: String, _ path: String) async throws(SecureExecError) {
        try validateGuestPath(path)
        let (mine, waiter) = try startWithPair(InitProtocol.fileRecords(operation, path), step: operation)
        SystemCall.close(mine)
        let result = await waiter()
        if result != 0 { throw Self.fileError(result, "\(operation) \(path)") }
    }

    /// A socket pair: one end goes to init's child, the other is returned.
    private func startWithPair(_ records: [String], step: String) throws(SecureExecError)
        -> (Int32, @Sendable () async -> Int32)
    {
        var pair: [Int32] = [-1, -1]
        guard se_stream_pair(&pair) == 0 else {
            throw SystemCall.failure(.ioFailed, "could not create a data socket", step: step)
        }
        defer { SystemCall.close(pair[1]) }
        // A descriptor of our own for the timeout to shut the transfer down
        // with: the caller closes `pair[0]` whenever it is done, and its
        // number may be reused by then.
        let watch = Mutex(fcntl(pair[0], F_DUPFD_CLOEXEC, 0))
        do throws(SecureExecError) {
            let waiter = try startFileRequest(records: records, fd: pair[1]) {
                watch.withLock { fd in if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) } }
            }
            SystemCall.setNonBlocking(pair[0])
            return (
                pair[0],
                {
                    let result = await waiter()
                    watch.withLock { fd in
                        SystemCall.close(fd)
                        fd = -1
                    }
                    return result
                }
            )
        } catch {
            SystemCall.close(pair[0])
            watch.withLock { SystemCall.close($0) }
            throw error
        }
    }

    /// Reads `fd` to EOF (closing it); nil if more than `limit` bytes came.
    private static func drain(_ fd: Int32, limit: Int, queue: DispatchQueue) async -> [UInt8]? {
        await withCheckedContinuation { continuation in
            let collected = ByteCollector(limit: limit)
            // One byte past the limit is enough to tell the file is too large (Int.max: no limit).
            _ = StdioPump(
                fd: fd, queue: queue, limit: limit == .max ? .max : limit + 1, onChunk: { collected.append($0) },
                onTruncated: {}, onEnd: { continuation.resume(returning: collected.take()) })
        }
    }

    /// `bytes` as frames of an op=write (se_protocol.h): a little-endian
    /// length, then the bytes. Nothing for an empty chunk (length 0 commits).
    private static func sendFrames(_ bytes: [UInt8], to fd: Int32, queue: DispatchQueue) async throws(SecureExecError) {
        var start = 0
        while start < bytes.count {
            let end = start + min(bytes.count - start, Int(SE_WRITE_FRAME_MAX))
            let header = withUnsafeBytes(of: UInt32(end - start).littleEndian) { Array($0) }
            if end - start <= 64 << 10 {
                // A small chunk goes with its header in one send.
                try await send(header + bytes[start..<end], to: fd, queue: queue)
            } else {
                try await send(header[...], to: fd, queue: queue)
                try await send(bytes[start..<end], to: fd, queue: queue)
            }
            start = end
        }
    }

    private static func send(_ bytes: ArraySlice<UInt8>, to fd: Int32, queue: DispatchQueue) async throws(SecureExecError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { se_send_nonblocking(fd, $0.baseAddress! + offset, UInt($0.count - offset)) }
            if sent >= 0 {
                offset += sent
            } else if errno == EAGAIN {
                await FDReadiness.writable(fd)
            } else if errno != EINTR {
                // The writer stopped reading (failed, e.g. ENOSPC): its status says why.
                throw SystemCall.failure(.ioFailed, "the sandbox stopped taking data", step: "write file")
            }
        }
    }

    static func fileError(_ errno: Int32, _ what: String) -> SecureExecError {
        switch errno {
        case ENOENT: SecureExecError(.notFound, "\(what): no such file or directory", step: "file", errno: errno)
        case EXDEV, ELOOP:
            SecureExecError(
                .invalidArgument, "\(what): the path leads outside the sandbox's writable areas (a symlink or mount)",
                step: "file", errno: errno)
        case ENOSPC: SecureExecError(.ioFailed, "\(what): no space left (the area's size limit)", step: "file", errno: errno)
        case EINTR: SecureExecError(.disposed, "\(what): the runtime was disposed", step: "file", errno: errno)
        case ETIMEDOUT:
            SecureExecError(.timeout, "\(what): the file operation did not finish in time", step: "file", errno: errno)
        default: SystemCall.failure(.ioFailed, what, step: "file", errno: errno)
        }
    }
}

/// Bytes gathered by one drain; nil once past the limit.
///
/// Each chunk is appended in place: the array grows geometrically, so a
/// read is linear in the file's size (nothing is reserved up front, so a
/// small file's array stays small); the bytes are moved out at the end.
private final class ByteCollector: Sendable {
    private let state = Mutex((bytes: [UInt8](), overflowed: false))
    private let limit: Int
    init(limit: Int) {
        self.limit = limit
    }
    func append(_ chunk: [UInt8]) {
        state.withLock { state in
            guard !state.overflowed else { return }
            guard chunk.count <= limit - state.bytes.count else {
                state.overflowed = true
                state.bytes = []
                return
            }
            state.bytes.append(contentsOf: chunk)
        }
    }
    /// The bytes (moved out, so the caller holds the only copy), or nil past the limit.
    func take() -> [UInt8]? {
        state.withLock { state in
            if state.overflowed { return nil }
            defer { state.bytes = [] }
            return state.bytes
        }
    }
}
