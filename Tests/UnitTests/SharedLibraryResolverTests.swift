#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import SecureExec

@Suite("Shared library resolution")
struct SharedLibraryResolverTests {
    static let node = "/usr/bin/node"

    @Test("node starts with its PT_INTERP, verbatim")
    func interpreterFirst() throws {
        let interp = try #require(try SharedLibraryResolver.runtimeFiles(forExecutable: Self.node).first)
        #expect(interp.guestPath.hasPrefix("/lib"))
        #expect(interp.guestPath.contains("ld-linux"))
        // .interp sits in the first page of the binary; finding the same NUL-terminated string there checks
        // the parser against the file itself, not against itself.
        let inInterpSection = firstPage(of: Self.node).contains(interp.guestPath + "\0")
        #expect(inInterpSection, "\(interp.guestPath) is not a NUL-terminated string in \(Self.node)'s first page")
        #expect(fileExists(interp.hostPath))
    }

    @Test("node needs a libc.so.6 that exists on the host, and every host path is already resolved")
    func libcPresent() throws {
        let files = try SharedLibraryResolver.runtimeFiles(forExecutable: Self.node)
        let libc = try #require(files.first { $0.guestPath.hasSuffix("/libc.so.6") })
        #expect(libc.guestPath.hasPrefix("/"))
        #expect(fileExists(libc.hostPath))
        for file in files {
            #expect(realPath(file.hostPath) == file.hostPath, "\(file.hostPath) is not a realpath")
        }
        #expect(Set(files.map(\.guestPath)).count == files.count, "duplicate guest paths: \(files)")
    }

    @Test("a DT_NEEDED naming the interpreter's soname is the interpreter, not a second copy")
    func interpreterNotDuplicated() throws {
        let files = try SharedLibraryResolver.runtimeFiles(forExecutable: Self.node)
        #expect(files.filter { $0.guestPath.contains("ld-linux") }.count == 1, "\(files.map(\.guestPath))")
    }

    @Test("a text file is not an executable")
    func textFileThrows() throws {
        let path = try temporaryFile(containing: Array("#!/bin/sh\necho not an ELF\n".utf8))
        defer { unlink(path) }
        let error = #expect(throws: SecureExecError.self) { try SharedLibraryResolver.runtimeFiles(forExecutable: path) }
        #expect(error?.code == .unsupportedHost)
        #expect(error?.message.contains(path) == true)
    }

    @Test("an ELF header whose program headers are cut off throws instead of looking static")
    func truncatedElfThrows() throws {
        // A well-formed ELF64 LE ET_DYN header for this machine announcing 4 program headers at offset 64,
        // in a file that ends at byte 64. Reading nothing there must not pass for "no PT_INTERP, no deps".
        var header = [UInt8](repeating: 0, count: 64)
        header.replaceSubrange(0..<8, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])
        header[16] = 3                                        // e_type = ET_DYN
        #if arch(arm64)
        header[18] = 183                                      // e_machine = EM_AARCH64
        #else
        header[18] = 62                                       // e_machine = EM_X86_64
        #endif
        header[32] = 64                                       // e_phoff
        header[54] = 56                                       // e_phentsize
        header[56] = 4                                        // e_phnum
        let path = try temporaryFile(containing: header)
        defer { unlink(path) }
        let error = #expect(throws: SecureExecError.self) { try SharedLibraryResolver.runtimeFiles(forExecutable: path) }
        #expect(error?.code == .unsupportedHost)
    }

    @Test("a missing executable throws with its path and ENOENT")
    func missingThrows() {
        let path = "/nonexistent/secure-exec-\(getpid())/node"
        let error = #expect(throws: SecureExecError.self) { try SharedLibraryResolver.runtimeFiles(forExecutable: path) }
        #expect(error?.code == .unsupportedHost)
        #expect(error?.message.contains(path) == true)
        #expect(error?.errno == ENOENT)
    }

    // MARK: - Helpers

    private func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    private func realPath(_ path: String) -> String? {
        guard let real = realpath(path, nil) else { return nil }
        defer { free(real) }
        return String(cString: real)
    }

    /// The first 4 KiB of `path` as Latin-1 text, so any byte sequence survives and can be searched.
    private func firstPage(of path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, 4096) }
        return String(bytes.prefix(max(n, 0)).map { Character(Unicode.Scalar($0)) })
    }

    private func temporaryFile(containing bytes: [UInt8]) throws -> String {
        var template = Array("/tmp/secure-exec-elf-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0, "mkstemp failed: errno \(errno)")
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        try #require(written == bytes.count)
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
