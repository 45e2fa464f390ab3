
/// One entry of `NodeRuntime.readDirectory`.
public struct DirectoryEntry: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case file, directory, symlink, other }
    public var name: String
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
extension NodeRuntime {
    /// Writes `contents` to `path`, creating parent directories and replacing any file there.
    public func writeFile(_ path: String, _ contents: [UInt8]) async throws(SecureExecError) {
        try await sandbox.writeFile(path, chunks: .bytes(contents))
    }

    /// Writes UTF-8 `text` to `path`; see `writeFile(_:_:)`.
    public func writeFile(_ path: String, text: String) async throws(SecureExecError) {
        try await sandbox.writeFile(path, chunks: .bytes(Array(text.utf8)))
    }

    /// Writes a file from chunks as they come (any size; the sequence is read
    /// only as fast as the sandbox takes it). Past the area's size limit it
    /// fails with `.ioFailed` and errno ENOSPC; the runtime stays usable.
    /// All or nothing: the file is replaced only once every chunk arrived.
    /// If `chunks` throws, the old file is left as it was and the error is
    /// the sequence's own (a `SecureExecError` as thrown, any other as
    /// `underlyingError` of an `.ioFailed`).
    public func writeFile<Chunks: AsyncSequence & Sendable>(_ path: String, contentsOf chunks: Chunks)
        async throws(SecureExecError) where Chunks.Element == [UInt8]
    {
        try await sandbox.writeFile(path, chunks: Self.streamBody(chunks))
    }

    /// Reads the whole file at `path` (at most `maxBytes`, else `.responseTooLarge`).
    public func readFile(_ path: String, maxBytes: Int = 64 << 20) async throws(SecureExecError) -> [UInt8] {
        try await sandbox.readFile(path, maxBytes: maxBytes)
    }

    /// Reads the file at `path` as UTF-8 text.
    public func readTextFile(_ path: String, maxBytes: Int = 64 << 20) async throws(SecureExecError) -> String {
        String(decoding: try await sandbox.readFile(path, maxBytes: maxBytes), as: UTF8.self)
    }

    /// The entries of the directory at `path`, sorted by name (without `.` and `..`).
    public func readDirectory(_ path: String) async throws(SecureExecError) -> [DirectoryEntry] {
        try await sandbox.listDirectory(path)
    }

    /// Removes a file, symlink or directory (with everything in it).
    public func remove(_ path: String) async throws(SecureExecError) {
        try await sandbox.removeItem(path)
    }

    /// Creates a directory and any missing parents.
    public func makeDirectory(_ path: String) async throws(SecureExecError) {
        try await sandbox.makeDirectory(path)
    }
}
