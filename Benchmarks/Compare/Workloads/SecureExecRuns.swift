import SecureExec

/// One cold start through the public API, with the time of each step.
public struct ColdStart: Sendable {
    /// create() alone: namespaces, id maps, cgroup, init, the guest root.
    public var create: Double
    /// spawn() called until node's main began (the request to init, fork, exec, loading).
    public var toNodeMain: Double
    /// node's main until the first line of the guest's code: node's own start.
    public var nodeStart: Double
    /// The guest's first line until `wait()` returned: its run, its exit, the report.
    public var toExitSeen: Double
    /// dispose(): init and the namespaces torn down, everything released.
    public var dispose: Double
    public var total: Double
}

/// The workloads as SecureExec runs them, through its public API only.
public enum SecureExecRuns {
    /// create + spawn of `GuestScripts.stamp` + wait + dispose, with root image `root`.
    public static func coldStart(limits: Limits = Limits(), root: RootImage = .standard) async throws -> ColdStart {
        let clocks = ClockPair()
        let start = clocks.monotonic
        let runtime = try await NodeRuntime.create(root: root, limits: limits)
        let created = monotonicNanos()
        let watch = OutputWatch()
        let guest: GuestProcess
        do {
            guest = try await runtime.spawn(GuestScripts.stamp, onStdout: watch.callback)
        } catch {
            await runtime.dispose()
            throw error
        }
        let termination = try await guest.wait()
        let exited = monotonicNanos()
        await runtime.dispose()
        let disposed = monotonicNanos()
        guard termination == .exited(0) else { throw BenchmarkFailure("the cold-start guest ended \(termination)") }
        try await watch.wait("the guest's timestamps") { GuestScripts.parseStamp($0.text, clocks: clocks) != nil }
        let stamp = GuestScripts.parseStamp(watch.text, clocks: clocks)!
        return ColdStart(
            create: milliseconds(from: start, to: created), toNodeMain: milliseconds(from: created, to: stamp.nodeMain),
            nodeStart: milliseconds(from: stamp.nodeMain, to: stamp.script),
            toExitSeen: milliseconds(from: stamp.script, to: exited), dispose: milliseconds(from: exited, to: disposed),
            total: milliseconds(from: start, to: disposed))
    }

    /// spawn of `GuestScripts.stamp` in an existing runtime until its first
    /// stdout byte reaches the host; returns (total, to node main, node's own start) in ms.
    public static func firstByte(in runtime: NodeRuntime) async throws -> (total: Double, toNodeMain: Double, nodeStart: Double) {
        let watch = OutputWatch()
        let clocks = ClockPair()
        let start = clocks.monotonic
        let guest = try await runtime.spawn(GuestScripts.stamp, onStdout: watch.callback)
        try await watch.wait("first stdout byte", gaveUp: { guest.termination != nil && watch.firstByteAt == nil }) {
            $0.firstByteAt != nil
        }
        let first = watch.firstByteAt!
        _ = try await guest.wait()
        try await watch.wait("the guest's timestamps") { GuestScripts.parseStamp($0.text, clocks: clocks) != nil }
        let stamp = GuestScripts.parseStamp(watch.text, clocks: clocks)!
        return (
            milliseconds(from: start, to: first), milliseconds(from: start, to: stamp.nodeMain),
            milliseconds(from: stamp.nodeMain, to: stamp.script)
        )
    }

    /// `spawnCommand(command)` in an existing runtime (with child processes
    /// allowed) until its first stdout byte reaches the host, in ms; the
    /// command's exit is awaited outside the timing.
    public static func commandFirstByte(in runtime: NodeRuntime, command: String) async throws -> Double {
        let watch = OutputWatch()
        let start = monotonicNanos()
        let process = try await runtime.spawnCommand(command, onStdout: watch.callback)
        try await watch.wait("first stdout byte of \(command)", gaveUp: { process.termination != nil && watch.firstByteAt == nil }) {
            $0.firstByteAt != nil
        }
        let first = watch.firstByteAt!
        let termination = try await process.wait()
        guard termination == .exited(0) else { throw BenchmarkFailure("\(command) ended \(termination)") }
        return milliseconds(from: start, to: first)
    }

    /// spawn of the dev server in an existing runtime until `waitForListener`
    /// returns (and, for reference, until its "listening" line reached the host).
    /// The server is stopped afterwards, outside the timing.
    public static func listen(in runtime: NodeRuntime, port: Int = 3000) async throws -> (listener: Double, line: Double?) {
        let watch = OutputWatch(needle: GuestScripts.listeningLine)
        let start = monotonicNanos()
        let server = try await runtime.spawn(
            GuestScripts.devServer, environment: ["PORT": "\(port)"], onStdout: watch.callback)
        do {
            try await runtime.waitForListener(port: port, process: server)
        } catch {
            server.kill(.kill)
            _ = try await server.wait()
            throw error
        }
        let listening = monotonicNanos()
        // The line usually lands within a millisecond of the socket; give it a moment.
        try? await watch.wait("the listening line", timeout: .seconds(2)) { $0.needleAt != nil }
        let line = watch.needleAt
        server.kill()
        _ = try await server.wait()
        return (milliseconds(from: start, to: listening), line.map { milliseconds(from: start, to: $0) })
    }

    /// create + spawn of the dev server + `waitForListener` (then stop and dispose, untimed).
    public static func coldListen(port: Int = 3000) async throws -> Double {
        let start = monotonicNanos()
        let runtime = try await NodeRuntime.create(permissions: .init(network: .allow))
        do {
            let server = try await runtime.spawn(GuestScripts.devServer, environment: ["PORT": "\(port)"])
            try await runtime.waitForListener(port: port, process: server)
            let listening = monotonicNanos()
            await runtime.dispose()
            return milliseconds(from: start, to: listening)
        } catch {
            await runtime.dispose()
            throw error
        }
    }

    /// spawn of the dev server to `waitForListener` in a runtime made for it
    /// (create and dispose outside the timing).
    public static func freshListen(port: Int = 3000) async throws -> Double {
        let runtime = try await NodeRuntime.create(permissions: .init(network: .allow))
        do {
            let times = try await listen(in: runtime, port: port)
            await runtime.dispose()
            return times.listener
        } catch {
            await runtime.dispose()
            throw error
        }
    }

    /// A runtime with network allowed and the dev server listening on `port`.
    public static func serving(port: Int = 3000) async throws -> (NodeRuntime, GuestProcess) {
        let runtime = try await NodeRuntime.create(permissions: .init(network: .allow))
        do {
            let server = try await runtime.spawn(GuestScripts.devServer, environment: ["PORT": "\(port)"])
            try await runtime.waitForListener(port: port, process: server)
            return (runtime, server)
        } catch {
            await runtime.dispose()
            throw error
        }
    }
}
