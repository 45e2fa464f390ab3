import CNamespaces
import Testing

@testable import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// What the supervisor tells init, and what it makes of init's answers,
/// checked without a sandbox.
@Suite("Init protocol: encoding")
struct InitProtocolTests {
    @Test("records are key=value, NUL-terminated, in order; a NUL inside one is refused")
    func payload() throws {
        let bytes = try InitProtocol.payload([InitProtocol.record(SE_KEY_ARG, "node"), InitProtocol.record(SE_KEY_CWD, "/w")])
        #expect(bytes == Array("arg=node\0cwd=/w\0".utf8))
        #expect(try InitProtocol.payload([]) == [])
        #expect(throws: SecureExecError.self) { try InitProtocol.payload(["env=A=\0B"]) }
    }

    @Test("a request larger than init's buffer is refused before it is sent")
    func payloadLimit() throws {
        let big = String(repeating: "x", count: Int(SE_MAX_REQUEST))
        do {
            _ = try InitProtocol.payload([InitProtocol.record(SE_KEY_ARG, big)])
            Issue.record("an oversized request was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("a code spawn names its entry file, lets node detect the module kind, and passes arguments after it")
    func spawnCode() {
        var request = SpawnRequest()
        request.code = "console.log(1)"
        request.arguments = ["--port", "3000"]
        request.nodeOptions = ["--require", "/w/hook.js"]
        let entry = InitProtocol.entryPath(request: 7)
        let records = InitProtocol.spawnRecords(request, entry: entry, limits: Limits())
        #expect(entry == "/workspace/.secure-exec-entry-7.js")
        #expect(records.prefix(4) == ["exe=/usr/bin/node", "cwd=/workspace", "arg=node", "entry=\(entry)"])
        let arguments = records.filter { $0.hasPrefix("arg=") }
        #expect(arguments == [
            "arg=node", "arg=--experimental-detect-module", "arg=--max-old-space-size=384", "arg=--require", "arg=/w/hook.js",
            "arg=\(entry)", "arg=--port", "arg=3000",
        ])
    }

    @Test("V8's old space is three quarters of the memory limit, unless there is none or the caller set one")
    func heapLimit() {
        func options(memory: Int?, request: SpawnRequest = SpawnRequest(), entry: String? = "/workspace/e.js") -> [String] {
            InitProtocol.spawnRecords(request, entry: entry, limits: Limits(memoryBytes: memory))
                .filter { $0.hasPrefix("arg=") }.map { String($0.dropFirst(4)) }
        }
        #expect(options(memory: 256 << 20).contains("--max-old-space-size=192"))
        #expect(options(memory: 16 << 20).contains("--max-old-space-size=12"))
        #expect(!options(memory: nil).contains { $0.hasPrefix("--max-old-space-size") })
        var caller = SpawnRequest()
        caller.nodeOptions = ["--max-old-space-size=100"]
        #expect(options(memory: 256 << 20, request: caller).filter { $0.hasPrefix("--max-old-space-size") } == ["--max-old-space-size=100"])
        caller = SpawnRequest()
        caller.environment = ["NODE_OPTIONS": "--trace-warnings --max_old_space_size=50"]
        #expect(!options(memory: 256 << 20, request: caller).contains { $0.hasPrefix("--max-old-space-size") })
        // Script arguments after an entry are the script's, not node's: they do not count.
        caller = SpawnRequest()
        caller.arguments = ["--max-old-space-size=1"]
        #expect(options(memory: 256 << 20, request: caller).contains("--max-old-space-size=192"))
        // Without an entry the arguments are node's own: the limit goes before them, unless they set one.
        caller = SpawnRequest()
        caller.arguments = ["-e", "1"]
        #expect(options(memory: 256 << 20, request: caller, entry: nil) == ["node", "--max-old-space-size=192", "-e", "1"])
        caller.arguments = ["--max-old-space-size=64", "-e", "1"]
        #expect(options(memory: 256 << 20, request: caller, entry: nil) == ["node", "--max-old-space-size=64", "-e", "1"])
    }

    @Test("a file spawn runs the file and carries no entry record")
    func spawnFile() {
        var request = SpawnRequest()
        request.entryFile = "/workspace/server.js"
        let records = InitProtocol.spawnRecords(request, entry: nil, limits: Limits())
        #expect(!records.contains { $0.hasPrefix("entry=") })
        #expect(records.contains("arg=/workspace/server.js"))
    }

    @Test("the environment is the safe defaults under the caller's values, sorted; nothing else")
    func environment() {
        var request = SpawnRequest()
        request.environment = ["HOME": "/tmp", "B": "2"]
        let environment = InitProtocol.spawnRecords(request, entry: nil, limits: Limits()).filter { $0.hasPrefix("env=") }
        #expect(environment == ["env=B=2", "env=HOME=/tmp", "env=PATH=/usr/bin:/bin", "env=TMPDIR=/tmp"])
    }

    @Test("rlimits: open files as given, no core dumps, CPU time rounded up to whole seconds with a hard limit a second later")
    func rlimits() {
        var limits = Limits()
        limits.openFilesPerProcess = 100
        limits.cpuTimePerProcess = .milliseconds(1500)
        let rlimits = InitProtocol.spawnRecords(SpawnRequest(), entry: nil, limits: limits).filter { $0.hasPrefix("rlimit=") }
        #expect(rlimits == [
            "rlimit=\(RLIMIT_NOFILE.rawValue):100:100", "rlimit=\(RLIMIT_CORE.rawValue):0:0", "rlimit=\(RLIMIT_CPU.rawValue):2:3",
        ])
        limits.cpuTimePerProcess = nil
        #expect(!InitProtocol.spawnRecords(SpawnRequest(), entry: nil, limits: limits).contains { $0.hasPrefix("rlimit=\(RLIMIT_CPU.rawValue):") })
    }

    @Test("whole seconds round up and never overflow")
    func wholeSeconds() {
        #expect(InitProtocol.wholeSeconds(.seconds(3), within: 1...10) == 3)
        #expect(InitProtocol.wholeSeconds(.milliseconds(1), within: 1...10) == 1)
        #expect(InitProtocol.wholeSeconds(.milliseconds(2001), within: 1...10) == 3)
        #expect(InitProtocol.wholeSeconds(.seconds(Int64.max), within: 1...10) == 10)
        #expect(InitProtocol.wholeSeconds(.seconds(-5), within: 1...10) == 1)
    }

    @Test("the configuration carries the permissions, sizes, writable areas and mounts last")
    func configuration() {
        var configuration = SandboxConfiguration()
        configuration.permissions = Permissions(network: .allow, childProcess: .deny)
        configuration.limits.workspaceBytes = 2 << 20
        configuration.limits.fileOperationTimeout = .milliseconds(2500)
        let records = InitProtocol.configRecords(
            configuration, mounts: [InitProtocol.mountRecord("/data")],
            tcpMemory: nil)
        #expect(records.contains("workspace_bytes=\(2 << 20)"))
        #expect(records.contains("network=1"))
        #expect(records.contains("child_process=0"))
        #expect(records.contains("guest_uid=1000"))
        #expect(records.filter { $0.hasPrefix("writable=") } == ["writable=/workspace", "writable=/tmp"])
        #expect(records.contains("file_timeout=3"))
        #expect(records.last == "mount=/data")
        #expect(!records.contains { $0.hasPrefix("localtime=") })
        let zoned = InitProtocol.configRecords(
            configuration, mounts: ["mount=/usr/share/zoneinfo/Asia/Tokyo"], tcpMemory: nil,
            localtime: "/usr/share/zoneinfo/Asia/Tokyo")
        #expect(zoned.suffix(2) == ["localtime=/usr/share/zoneinfo/Asia/Tokyo", "mount=/usr/share/zoneinfo/Asia/Tokyo"])
        #expect(InitProtocol.workspaceRecord(.overlay) == "workspace=overlay")
        #expect(InitProtocol.workspaceRecord(.readWrite) == "workspace=bind")
    }

    @Test("only an egress policy makes init name the sandbox's DNS server in resolv.conf")
    func nameserver() throws {
        var configuration = SandboxConfiguration()
        configuration.permissions = Permissions(network: .allow)
        #expect(!InitProtocol.configRecords(configuration, mounts: [], tcpMemory: nil).contains { $0.hasPrefix("nameserver=") })
        configuration.permissions = Permissions(network: .allow(egress: try EgressPolicy(allow: ["example.com"])))
        let records = InitProtocol.configRecords(configuration, mounts: [], tcpMemory: nil)
        #expect(records.contains("nameserver=127.0.0.1"))
        #expect(records.contains("network=1"))
    }

    @Test("sysctls: no namespaces for guests, inotify as limited, TCP buffers at most 1/64 of memory")
    func sysctls() {
        var limits = Limits()
        limits.memoryBytes = 64 << 20
        let host = InitProtocol.TCPMemory(read: [4096, 131072, 6 << 20], write: [4096, 16384, 4 << 20])
        let settings = InitProtocol.sysctls(limits, tcpMemory: host)
        #expect(settings.contains("user/max_user_namespaces 0"))
        #expect(settings.contains("user/max_inotify_instances 128"))
        #expect(settings.contains("net/ipv4/ip_unprivileged_port_start 0"))
        // 64 MiB / 64 = 1 MiB ceiling; min and default stay under it.
        #expect(settings.contains("net/ipv4/tcp_rmem 4096 131072 \(1 << 20)"))
        #expect(settings.contains("net/ipv4/tcp_wmem 4096 16384 \(1 << 20)"))
        limits.memoryBytes = nil
        #expect(!InitProtocol.sysctls(limits, tcpMemory: host).contains { $0.hasPrefix("net/ipv4/tcp_") })
    }

    @Test("a spawn failure names the missing executable or interpreter init reported")
    func spawnFailure() {
        #expect(InitProtocol.spawnFailure(step: "missing interpreter /usr/bin/python3").contains("/usr/bin/python3"))
        #expect(InitProtocol.spawnFailure(step: "open /opt/tool") == "the guest could not be started: could not open /opt/tool")
        #expect(InitProtocol.spawnFailure(step: "setrlimit") == "the guest could not be started")
    }

    @Test("every event kind decodes, with its request id, pid, step and errno")
    func decode() {
        func event(_ type: se_event_type, id: UInt32 = 0, pid: Int32 = 0, status: Int32 = 0, err: Int32 = 0, step: String = "")
            -> se_event
        {
            var event = se_event()
            event.type = type.rawValue
            event.id = id
            event.pid = pid
            event.status = status
            event.err = err
            withUnsafeMutableBytes(of: &event.step) { buffer in
                for (index, byte) in step.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
            }
            return event
        }
        #expect(InitProtocol.decode(event(SE_EV_READY)) == .ready)
        #expect(InitProtocol.decode(event(SE_EV_SETUP_FAILED, err: EPERM, step: "mount proc")) == .setupFailed(step: "mount proc", errno: EPERM))
        #expect(InitProtocol.decode(event(SE_EV_SPAWNED, id: 4, pid: 12)) == .spawned(request: 4, pid: 12))
        #expect(InitProtocol.decode(event(SE_EV_SPAWN_FAILED, id: 4, err: ENOENT, step: "execve")) == .spawnFailed(request: 4, step: "execve", errno: ENOENT))
        #expect(InitProtocol.decode(event(SE_EV_EXITED, pid: 12, status: 256)) == .exited(pid: 12, status: 256))
        #expect(InitProtocol.decode(event(SE_EV_SIGNAL_FAILED, id: 0, pid: 12, err: ESRCH)) == .signalFailed(request: 0, pid: 12, errno: ESRCH))
        #expect(InitProtocol.decode(event(SE_EV_FILE_DONE, id: 9, err: ENOSPC)) == .fileDone(request: 9, errno: ENOSPC))
        #expect(InitProtocol.decode(event(SE_EV_REQUEST_FAILED, id: 5, err: EPROTO, step: "unknown request type"))
            == .requestFailed(request: 5, step: "unknown request type", errno: EPROTO))
        #expect(InitProtocol.decode(event(se_event_type(rawValue: 99))) == .unknown(type: 99))
    }

    @Test("wait statuses become terminations")
    func waitStatus() {
        #expect(Termination(waitStatus: 3 << 8) == .exited(3))
        #expect(Termination(waitStatus: SIGKILL) == .signaled(.kill))
    }

    @Test("the clone child's steps have the names C gives them")
    func childSteps() {
        #expect(InitProtocol.childStepName(Int32(SE_CHILD_STEP_SETUID.rawValue)) == "setresuid")
        #expect(InitProtocol.childStepName(Int32(SE_CHILD_STEP_CLOSE_RANGE.rawValue)) == "close_range")
        #expect(InitProtocol.childStepName(12345) == "execveat init")
    }
}
