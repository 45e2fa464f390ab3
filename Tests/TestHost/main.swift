// A host program for the leak tests: it owns one sandbox with a guest that
// runs forever, says READY, and sleeps until it is killed. The leak tests
// SIGKILL it and check that its sandbox's init and guest die with it.
//
// Usage: secure-exec-test-host <marker> [--stray-fork] [--new-netns]
// With --stray-fork it also forks a child that never execs and sleeps, as a
// host app's careless fork would: that child holds copies of every fd,
// including the sandbox's control socket, and prints "STRAY <pid>".
// With --new-netns it first moves into a network namespace of its own
// (unshare, then exec of itself without the flag, so every thread of the
// supervisor runs there), as a supervisor in a container would.
// The guest gets SECURE_EXEC_TEST_MARKER=<marker> in its environment, so the
// test can find exactly this host's guest in /proc/<pid>/environ.
import Foundation
import SecureExec

if CommandLine.arguments.contains("--new-netns") {
    // Before anything else runs: the exec below starts over in the new namespace.
    // Glibc's Swift module leaves out unshare (it needs _GNU_SOURCE): look it up by name.
    typealias Unshare = @convention(c) (Int32) -> Int32
    let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET
    guard let symbol = dlsym(nil, "unshare"), unsafeBitCast(symbol, to: Unshare.self)(cloneNewNet) == 0 else {
        FileHandle.standardError.write(Data("secure-exec-test-host: unshare(CLONE_NEWNET) failed: errno \(errno)\n".utf8))
        exit(1)
    }
    let arguments = CommandLine.arguments.filter { $0 != "--new-netns" }
    let argv = arguments.map { strdup($0) } + [nil]
    execv("/proc/self/exe", argv)
    FileHandle.standardError.write(Data("secure-exec-test-host: exec after unshare failed: errno \(errno)\n".utf8))
    exit(1)
}

let marker = CommandLine.arguments.dropFirst().first ?? "secure-exec-test-host"

let guestCode = """
    // secure-exec-test-host guest
    setInterval(() => {}, 1000);
    console.log("guest up");
    """

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

do {
    let runtime = try await NodeRuntime.create(permissions: .init(network: .allow))
    let (lines, continuation) = AsyncStream.makeStream(of: [UInt8].self)
    let guest = try await runtime.spawn(
        guestCode, environment: ["SECURE_EXEC_TEST_MARKER": marker],
        onStdout: { continuation.yield($0) },
        onStderr: { FileHandle.standardError.write(Data($0)) })
    Task {
        try await guest.wait()
        continuation.finish()
    }
    // READY only once node runs the guest's code, so the test sees a live guest.
    var received: [UInt8] = []
    for await chunk in lines {
        received += chunk
        if String(decoding: received, as: UTF8.self).contains("guest up\n") { break }
    }
    guard String(decoding: received, as: UTF8.self).contains("guest up\n") else {
        FileHandle.standardError.write(Data("secure-exec-test-host: the guest \(try await guest.wait()) before it was up\n".utf8))
        exit(1)
    }
    if CommandLine.arguments.contains("--stray-fork") {
        let child = fork()
        if child == 0 {
            // Only async-signal-safe calls in the copy of a threaded process.
            while true { pause() }
        }
        say("STRAY \(child)")
    }
    say("READY \(guest.pid)")
    while true { try await Task.sleep(for: .seconds(3600)) }
} catch {
    FileHandle.standardError.write(Data("secure-exec-test-host failed: \(error)\n".utf8))
    exit(1)
}
