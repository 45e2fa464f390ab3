import Foundation
import SecureExec
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers only the escape suites (EscapeTests.swift) need: the native probe,
// host sockets a guest must not reach, and extended attributes.

/// The static native probe (`Tests/Probes/probe.c`) and how guests run it.
enum EscapeProbe {
    /// Where the probe's host folder is mounted in the sandbox.
    static let guestDirectory = "/mnt/probe"

    /// The built probe on the host: `SECURE_EXEC_PROBE`, else `<root>/.build/probes/secure-exec-probe`.
    /// Throws (so the test fails, never skips) when it has not been built.
    static func hostPath() throws -> String {
        let path = ProcessInfo.processInfo.environment["SECURE_EXEC_PROBE"]
            ?? PackagePaths.root + "/.build/probes/secure-exec-probe"
        guard access(path, X_OK) == 0 else {
            throw TestFailure(
                "the native escape probe \(path) is missing: run `make probes` "
                    + "(or set SECURE_EXEC_PROBE to a built secure-exec-probe)")
        }
        return path
    }

    /// Shows the folder holding `hostBinary` at `/mnt/probe`, read-only.
    static func mount(for hostBinary: String) -> Mount {
        Mount(host: (hostBinary as NSString).deletingLastPathComponent, guest: guestDirectory)
    }

    /// The probe's path inside the sandbox when `hostBinary` is mounted with `mount(for:)`.
    static func guestPath(for hostBinary: String) -> String {
        guestDirectory + "/" + (hostBinary as NSString).lastPathComponent
    }

    /// A node guest that runs the probe given as its first argument with the
    /// rest as the probe's arguments, and prints the probe's one line (or
    /// what went wrong starting it).
    static let runner = """
        const { spawnSync } = require("child_process");
        const [binary, ...probeArguments] = process.argv.slice(2);
        const result = spawnSync(binary, probeArguments, { encoding: "utf8", timeout: 60000 });
        if (result.error) console.log("SPAWN-ERROR " + result.error.code);
        else if (result.signal) console.log("SIGNALED " + result.signal + " " + (result.stdout || ""));
        else process.stdout.write(result.stdout);
        if (result.stderr) process.stderr.write(result.stderr);
        """

    /// Permissions for a probe guest: node must start the probe, and the socket
    /// probes need the network rules in place to test that raw types stay out.
    static let permissions = Permissions(network: .allow, childProcess: .allow)

    /// Runs probe `name` in `runtime` (which must have the probe mounted) and returns how it ended.
    static func run(
        _ name: String, arguments: [String] = [], hostBinary: String, in runtime: NodeRuntime
    ) async throws -> FinishedGuest {
        try await runtime.runGuest(runner, arguments: [guestPath(for: hostBinary), name] + arguments)
    }

    /// The probe names the binary itself lists (`secure-exec-probe list`, run on the host).
    static func listed(by hostBinary: String) async throws -> [String] {
        let program = try HostProgram(hostBinary, arguments: ["list"])
        defer { program.stop() }
        try await program.waitForExit()
        return program.stdout.lines
    }

    /// Bounds how many sandboxes the parameterized probe suite builds at once, so
    /// ninety test cases do not start ninety sandboxes together on a small machine.
    static let slots = Slots(count: 6)
}

/// A host socket a guest must not be able to reach: TCP on 127.0.0.1 or ::1 at
/// a kernel-chosen port, or an abstract unix socket. Nothing accepts while the
/// guest runs; the kernel queues any completed connection, so `drain()`
/// afterwards counts every connection anyone made. Close it with `close()`.
final class EscapeHostListener {
    enum Kind: Sendable, CustomStringConvertible {
        case ipv4Loopback
        case ipv6Loopback
        case abstractUnix(String)

        var description: String {
            switch self {
            case .ipv4Loopback: "127.0.0.1"
            case .ipv6Loopback: "[::1]"
            case .abstractUnix(let name): "@\(name)"
            }
        }

        var family: Int32 {
            switch self {
            case .ipv4Loopback: AF_INET
            case .ipv6Loopback: AF_INET6
            case .abstractUnix: AF_UNIX
            }
        }
    }

    let kind: Kind
    private(set) var fd: Int32
    /// The TCP port (0 for a unix socket).
    private(set) var port = 0

    init(_ kind: Kind) throws {
        self.kind = kind
        fd = socket(kind.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw HostCallError(step: "socket", errno: errno) }
        do {
            try withAddress { address, length in
                guard bind(fd, address, length) == 0 else { throw HostCallError(step: "bind \(kind)", errno: errno) }
            }
            guard listen(fd, 128) == 0 else { throw HostCallError(step: "listen", errno: errno) }
            if case .abstractUnix = kind {} else { port = try boundPort(of: fd) }
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    /// Calls `body` with this listener's address (port as bound, 0 before `bind`).
    private func withAddress(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Void) throws {
        switch kind {
        case .ipv4Loopback:
            _ = try withSocketAddress(host: "127.0.0.1", port: port, body)
        case .ipv6Loopback:
            _ = try withSocketAddress(host: "::1", port: port, body)
        case .abstractUnix(let name):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(name.utf8)
            withUnsafeMutableBytes(of: &address.sun_path) { path in
                path[0] = 0  // abstract: the name lives in the network namespace, not on disk
                for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
            }
            try withSocketAddress(of: &address, length: MemoryLayout<sa_family_t>.size + 1 + bytes.count, body)
        }
    }

    /// Accepts and closes, without blocking, every queued connection; returns how many there were.
    func drain() -> Int {
        var count = 0
        while true {
            let connection = accept(fd, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return count
            }
            Glibc.close(connection)
            count += 1
        }
    }

    /// Connects from the host (the control: the listener does count real connections).
    func connectFromHost() throws {
        let client = socket(kind.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { throw HostCallError(step: "socket", errno: errno) }
        defer { Glibc.close(client) }
        try withAddress { address, length in
            guard connect(client, address, length) == 0 else { throw HostCallError(step: "connect", errno: errno) }
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// Extended attributes on host files. Glibc's Swift module leaves out
/// <sys/xattr.h>, so the two libc functions are looked up by name.
enum EscapeXattr {
    private typealias SetFunction = @convention(c) (
        UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32
    ) -> Int32
    private typealias GetFunction = @convention(c) (
        UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int
    ) -> Int

    private static func function<Function>(_ name: String, as type: Function.Type) throws -> Function {
        guard let symbol = dlsym(nil, name) else { throw TestFailure("libc has no \(name)") }
        return unsafeBitCast(symbol, to: type)
    }

    /// setxattr(2): sets attribute `name` of `path` to `value`.
    static func set(_ path: String, name: String, value: [UInt8]) throws {
        let setxattr = try function("setxattr", as: SetFunction.self)
        let result = value.withUnsafeBytes { setxattr(path, name, $0.baseAddress, $0.count, 0) }
        guard result == 0 else { throw HostCallError(step: "setxattr \(name) on \(path)", errno: errno) }
    }

    /// getxattr(2): the value of attribute `name` of `path`.
    static func get(_ path: String, name: String) throws -> [UInt8] {
        let getxattr = try function("getxattr", as: GetFunction.self)
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = buffer.withUnsafeMutableBytes { getxattr(path, name, $0.baseAddress, $0.count) }
        guard length >= 0 else { throw HostCallError(step: "getxattr \(name) on \(path)", errno: errno) }
        return Array(buffer[..<length])
    }
}
