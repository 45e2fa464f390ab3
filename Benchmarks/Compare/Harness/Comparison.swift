import BenchmarkWorkloads
import Foundation
import SecureExec

#if canImport(Glibc)
import Glibc
#endif

/// Settings for one run of the harness.
struct Options {
    /// One iteration of everything, small counts, no file written.
    var smoke = false
    /// Alternations of each timed workload (each contender runs once per round).
    var rounds = 30
    /// Requests per contender per fetch round.
    var requestsPerRound = 250
    var fetchRounds = 20
    var wrkRounds = 3
    var wrkSeconds = 4
    /// Idle dev-server sandboxes alive at once (SecureExec), and for bwrap and bare node.
    var sandboxes = 200
    var otherSandboxes = 50
    var churnCycles = 1000
    var otherChurnCycles = 100
    /// File sizes moved by the `files` workload (readFile and a collected fetch), and its rounds per size.
    var fileSizes = [1 << 20, 16 << 20, 64 << 20, 256 << 20]
    var fileRounds = 7
    /// The egress client's counts per run: warm-up and timed kept-alive GETs, GETs on
    /// a new connection each, dns.lookups of the name, and the bytes of its one download.
    var egressWarmup = 20
    var egressRequests = 200
    var egressFresh = 50
    var egressLookups = 50
    var egressBytes = 64 << 20
    var output: String?
    /// Workloads to run (all when nil): cold, first-byte, listen, fetch, memory, churn, project, roots, files, egress.
    var only: Set<String>?

    static let workloads = ["cold", "first-byte", "listen", "fetch", "memory", "churn", "project", "roots", "files", "egress"]

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var iterator = arguments.makeIterator()
        func value(_ flag: String) throws -> String {
            guard let next = iterator.next() else { throw BenchmarkFailure("\(flag) needs a value") }
            return next
        }
        func count(_ flag: String) throws -> Int {
            let text = try value(flag)
            guard let number = Int(text), number > 0 else { throw BenchmarkFailure("\(flag) needs a positive number, got \(text)") }
            return number
        }
        while let argument = iterator.next() {
            switch argument {
            case "--smoke": options.smoke = true
            case "--rounds": options.rounds = try count(argument)
            case "--sandboxes": options.sandboxes = try count(argument)
            case "--churn": options.churnCycles = try count(argument)
            case "--output": options.output = try value(argument)
            case "--file-sizes":
                let text = try value(argument)
                let sizes = text.split(separator: ",").compactMap { Int($0) }
                guard !sizes.isEmpty, sizes.count == text.split(separator: ",").count, sizes.allSatisfy({ (1...4096).contains($0) })
                else { throw BenchmarkFailure("--file-sizes needs MiB counts 1-4096 separated by commas, got \(text)") }
                options.fileSizes = sizes.map { $0 << 20 }
            case "--file-rounds": options.fileRounds = try count(argument)
            case "--only":
                let names = Set(try value(argument).split(separator: ",").map(String.init))
                let unknown = names.subtracting(workloads)
                guard unknown.isEmpty else { throw BenchmarkFailure("unknown workloads \(unknown.sorted()); known: \(workloads)") }
                options.only = names
            case "--help", "-h":
                print(
                    """
                    usage: secure-exec-compare [--smoke] [--rounds N] [--sandboxes N] [--churn N] [--file-sizes MiB,...] [--file-rounds N]
                                             [--output FILE] [--only \(workloads.joined(separator: ","))]
                      Runs each workload as bare node, under bwrap and in SecureExec, alternated, and
                      writes the medians to BENCHMARKS.md (not with --smoke or --only).
                      --smoke  one iteration of every workload, nothing written; exits non-zero on any failure.
                      --file-sizes  the sizes the files workload moves, in MiB (default 1,16,64,256).
                      --rounds  also the egress workload's runs per contender (each: 200 kept-alive GETs,
                                50 on new connections, 50 lookups, one 64 MiB download).
                    """)
                exit(0)
            default: throw BenchmarkFailure("unknown argument \(argument) (try --help)")
            }
        }
        if options.smoke {
            options.rounds = 1
            options.requestsPerRound = 5
            options.fetchRounds = 1
            options.wrkRounds = 1
            options.wrkSeconds = 1
            options.sandboxes = 2
            options.otherSandboxes = 2
            options.churnCycles = 3
            options.otherChurnCycles = 2
            options.fileSizes = [64 << 10]
            options.fileRounds = 1
            options.egressWarmup = 1
            options.egressRequests = 5
            options.egressFresh = 3
            options.egressLookups = 3
            options.egressBytes = 64 << 10
        }
        return options
    }

    func runs(_ workload: String) -> Bool { only?.contains(workload) ?? true }
}

/// Everything one run found, in the order it is reported.
@MainActor
final class Comparison {
    let options: Options
    let host: NodeHost
    let probe: PhaseProbe
    var rows: [ComparisonRow] = []
    /// Cold start, step by step: (step, bare, bwrap, SecureExec), medians in ms.
    var phaseRows: [[String]] = []
    var kernelRows: [[String]] = []
    /// Where the cold start's time goes, in sentences built from the medians.
    var coldStartAnalysis: [String] = []
    var memoryRows: [[String]] = []
    var churnRows: [[String]] = []
    /// A 1,000-file project started by copy and by overlay mount: (how, median ms, ratio to copy).
    var projectRows: [[String]] = []
    /// The root images side by side: (what, .standard ms, .minimal ms, difference).
    var rootRows: [[String]] = []
    /// Whole files moved between host and sandbox, one row per size.
    var fileRows: [FileTransferRow] = []
    /// Egress: the same client direct and through the gateway (`EgressRows`), and what the medians say.
    var egressRows: [[String]] = []
    var egressAnalysis: [String] = []
    var goals: [GoalOutcome] = []
    var notes: [String] = []

    init(options: Options, host: NodeHost) {
        self.options = options
        self.host = host
        self.probe = PhaseProbe(host: host)
    }

    var hasBwrap: Bool { host.bwrap != nil }
    var hasWrk: Bool { NodeHost.findExecutable("wrk") != nil }

    /// The contenders of round `round`, rotated so none always goes first.
    func rotated<T>(_ items: [T], by round: Int) -> [T] {
        let shift = round % items.count
        return Array(items[shift...] + items[..<shift])
    }

    var bareHome: String { host.scratch + "/workspace" }

    func say(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// A loopback port nothing listens on right now (the kernel's pick).
    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkFailure("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw BenchmarkFailure("bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
