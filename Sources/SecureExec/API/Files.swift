
/// One entry of `NodeRuntime.readDirectory`.
public struct DirectoryEntry: Sendable, Hashable {
    /// What an entry is: a regular `file`, a `directory`, a `symlink` (not
    /// followed), or `other` (a socket, a fifo, a device node).
    public enum Kind: Sendable, Hashable { case file, directory, symlink, other }
    /// The entry's name within the directory (not a path).
    public var name: String
    /// What the entry is.
    public var kind: Kind
}

/// Files in the sandbox, at paths as the guest sees them.
///
/// Every operation runs inside the sandbox as the guest itself (its uid, no
/// capabilities), confined to the writable areas: `/workspace`, `/tmp` and
/// read-write mounts. A path outside them, not absolute, or not normalized
/// (`..`, `.`, `//`) is `.invalidArgument` before anything happens; a
/// symlink that leads out of the area (to `/etc/shadow`, to `/proc/1/root`,
/// anywhere) is refused with `.invalidArgument` instead of being followed.
///
/// Errors, for each: `.invalidArgument` as above; `.notFound` when the path
/// or a parent does not exist (writes and `makeDirectory` create parents);
/// `.ioFailed` with the errno otherwise (ENOSPC past an area's size limit);
/// `.timeout` after `Limits.fileOperationTimeout`; `.disposed` after
/// `dispose()`.
extension NodeRuntime {
    /// Writes `contents` to `path`, creating parent directories and replacing any file there.
    ///
    /// - Throws: `.invalidArgument` for a path outside the writable areas or
    ///   through a symlink, `.ioFailed` (ENOSPC when the area is full), `.timeout`,
    ///   `.disposed`.
    public func writeFile(_ path: String, _ contents: [UInt8]) async throws(SecureExecError) {
        try await sandbox.writeFile(path, chunks: .bytes(contents))
    }

    /// Writes UTF-8 `text` to `path`; see `writeFile(_:_:)`.
    ///
    /// - Throws: `.invalidArgument` for a path outside the writable areas or
    ///   through a symlink, `.ioFailed` (ENOSPC when the area is full), `.timeout`,
    ///   `.disposed`.
    public func writeFile(_ path: String, text: String) async throws(SecureExecError) {
        try await sandbox.writeFile(path, chunks: .bytes(Array(text.utf8)))
    }

    /// Writes a file from chunks as they come (any size; the sequence is read
    /// only as fast as the sandbox takes it). Past the area's size limit it
    /// fails with `.ioFailed` and errno ENOSPC; the runtime stays usable.
    ///
    /// All or nothing: the file is replaced only once every chunk arrived.
    /// If `chunks` throws, the old file is left as it was and the error is
    /// the sequence's own (a `SecureExecError` as thrown, any other as
    /// `underlyingError` of an `.ioFailed`).
    /// - Throws: as `writeFile(_:_:)`, or the sequence's error as above.
    public func writeFile<Chunks: AsyncSequence & Sendable>(_ path: String, contentsOf chunks: Chunks)
        async throws(SecureExecError) where Chunks.Element == [UInt8]
    {
        try await sandbox.writeFile(path, chunks: Self.streamBody(chunks))
    }

    /// Reads the whole file at `path` (at most `maxBytes`, else `.responseTooLarge`).
    ///
    /// - Throws: `.responseTooLarge`, `.notFound`, `.invalidArgument` for a path
    ///   outside the writable areas or through a symlink, `.ioFailed` (e.g. not a
    ///   regular file), `.timeout`, `.disposed`.
    public func readFile(_ path: String, maxBytes: Int = 64 << 20) async throws(SecureExecError) -> [UInt8] {
        try await sandbox.readFile(path, maxBytes: maxBytes)
    }

    /// Reads the file at `path` as UTF-8 text.
    ///
    /// Invalid UTF-8 is replaced, not refused; see `readFile(_:maxBytes:)`.
    /// - Throws: as `readFile(_:maxBytes:)`.
    public func readTextFile(_ path: String, maxBytes: Int = 64 << 20) async throws(SecureExecError) -> String {
        String(decoding: try await sandbox.readFile(path, maxBytes: maxBytes), as: UTF8.self)
    }

    /// The entries of the directory at `path`, sorted by name (without `.` and `..`).
    ///
    /// - Throws: `.notFound`, `.invalidArgument` for a path outside the writable
    ///   areas or through a symlink, `.ioFailed` (e.g. not a directory),
    ///   `.timeout`, `.disposed`.
    public func readDirectory(_ path: String) async throws(SecureExecError) -> [DirectoryEntry] {
        try await sandbox.listDirectory(path)
    }

    /// Removes a file, symlink or directory (with everything in it).
    ///
    /// A symlink is removed itself, never what it points to.
    /// - Throws: `.notFound` when nothing is there, `.invalidArgument` for a path
    ///   outside the writable areas or through a symlink, `.ioFailed`, `.timeout`,
    ///   `.disposed`.
    public func remove(_ path: String) async throws(SecureExecError) {
        try await sandbox.removeItem(path)
    }

    /// Creates a directory and any missing parents.
    ///
    /// - Throws: `.invalidArgument` for a path outside the writable areas or
    ///   through a symlink, `.ioFailed` (a file in the way, ENOSPC), `.timeout`,
    ///   `.disposed`.
    public func makeDirectory(_ path: String) async throws(SecureExecError) {
        try await sandbox.makeDirectory(path)
    }
}
